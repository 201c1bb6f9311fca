"""Decision rows written at driver speed: one plain INSERT, executed over tuples.

The ORM's bulk insert compiles the statement and runs a per-row dictionary pipeline on every
flush; at about 40 us per decision, in the serving process, that was the decision log's
main cost and the source of /choose's tail (the flush holds the interpreter lock). Here the
rows go to the driver's ``executemany`` as tuples, with each column's bind processing taken
from the dialect (so a datetime is stored exactly as the ORM would store it), through
SQLAlchemy's connection, so a failure still arrives as a ``DBAPIError`` the fault
classifier reads (transient: keep the batch; about a row: bisect).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Dialect
from sqlmodel import Session

from service.decisions.records import DecisionRecord
from service.models import Decision
from service.repositories.common import table_of

COLUMNS = (
    "id",
    "experiment_id",
    "epoch",
    "arm_id",
    "segment",
    "unit_hash",
    "send_id",
    "propensity",
    "explored",
    "policy_version",
    "created_at",
)


def insert_decisions(session: Session, records: Sequence[DecisionRecord]) -> None:
    """INSERT the decisions in the session's transaction (no conflict handling: unkeyed ids
    are unique by construction, and a clash is a fault about that row)."""
    if not records:
        return
    connection = session.connection()
    statement, processors = _prepared(connection.dialect)
    rows = [
        (
            r.id,
            r.experiment_id,
            r.epoch,
            r.arm_id,
            r.segment,
            r.unit_hash,
            r.send_id,
            r.propensity,
            r.explored,
            r.policy_version,
            r.created_at,
        )
        for r in records
    ]
    if processors:
        rows = [_processed(row, processors) for row in rows]
    connection.exec_driver_sql(statement, rows)


def _processed(
    row: tuple[Any, ...], processors: Sequence[tuple[int, Callable[[Any], Any]]]
) -> tuple[Any, ...]:
    values = list(row)
    for index, process in processors:
        if values[index] is not None:
            values[index] = process(values[index])
    return tuple(values)


@cache
def _prepared(dialect: Dialect) -> tuple[str, tuple[tuple[int, Callable[[Any], Any]], ...]]:
    """The INSERT in the driver's parameter style, and the columns whose values the dialect
    converts before binding (e.g. SQLite's datetimes, stored as text)."""
    table = table_of(Decision)
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(dialect.identifier_preparer.quote(name) for name in COLUMNS)
    marks = ", ".join([marker] * len(COLUMNS))
    statement = f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({names}) "
    statement += f"VALUES ({marks})"
    processors = []
    for index, name in enumerate(COLUMNS):
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((index, process))
    return statement, tuple(processors)
