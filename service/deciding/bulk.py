"""Decision rows written at driver speed: COPY on PostgreSQL, executemany on SQLite.

The ORM's bulk insert compiles the statement and runs a per-row dictionary pipeline on every
flush; in the serving process that was the decision log's main cost and the source of
/choose's tail (the flush holds the interpreter lock). Measured per row (CPU of the
writing process, 3,000 rows a transaction): PostgreSQL 17.5 us by the ORM, 10.9 us by
executemany, 2.8 us by COPY; SQLite about 40 us by the ORM against about 8 us by
executemany over tuples.

On SQLite the rows go to ``executemany`` through SQLAlchemy's connection, with each
column's bind processing taken from the dialect (so a datetime is stored exactly as the ORM
would store it). On PostgreSQL they go through psycopg's COPY in the session's transaction,
and a driver error is raised as SQLAlchemy's ``DBAPIError`` subclass for it, so the fault
classifier reads it as before (transient: keep the batch; about a row: bisect).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from service.core.statements import table_of
from service.deciding import repository as decisions_repo
from service.deciding.records import DecisionRecord
from service.models import Decision

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
    if connection.dialect.name == "postgresql":
        _copy(connection.connection.driver_connection, [_values(r) for r in records])
        return
    statement, processors = _prepared(connection.dialect)
    if _plain_sqlite(connection.dialect):
        rows = _sqlite_rows(records)
    elif processors:
        rows = [_processed(_values(r), processors) for r in records]
    else:
        rows = [_values(r) for r in records]
    connection.exec_driver_sql(statement, rows)


KEYED_COLUMNS = (*COLUMNS, "holdout")
# Per connection, emptied by each commit: keyed rows are copied here, then moved into the
# table by one INSERT ... SELECT that skips the keys already stored.
_STAGING = "decision_keyed_in"


def insert_keyed_decisions(session: Session, records: Sequence[DecisionRecord]) -> set[str]:
    """Insert keyed decisions unless (experiment, unit, send) or the id is already stored;
    return the ids that were new (DESIGN: exposures only from stored decisions).

    On PostgreSQL a batch of new keys is copied straight in (``_copy_if_all_new``);
    otherwise the rows travel by COPY into a temporary table and one
    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING id`` moves them: building the
    JSON document of the generic insert-or-ignore was a fifth of a keyed batch's time.
    On SQLite a batch of new keys goes in by one ``executemany`` over tuples
    (``_insert_if_all_new_sqlite``); otherwise it takes the generic insert-or-ignore."""
    if not records:
        return set()
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        if _insert_if_all_new_sqlite(connection, records):
            return {r.id for r in records}
        return decisions_repo.insert_keyed(session, rows=[r.row() for r in records])
    rows = [_keyed_values(r) for r in records]
    names = ", ".join(KEYED_COLUMNS)
    driver = connection.connection.driver_connection
    assert driver is not None
    if _copy_if_all_new(driver, rows, names):
        return {r.id for r in records}
    steps = (
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} "
        "(LIKE decision INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        f"COPY {_STAGING} ({names}) FROM STDIN",
        f"INSERT INTO decision ({names}) SELECT {names} FROM {_STAGING} "
        "ON CONFLICT DO NOTHING RETURNING id",
    )
    with _driver_errors(driver, steps[1]), driver.cursor() as cursor:
        cursor.execute(steps[0])
        with cursor.copy(steps[1]) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(steps[2])
        new = {found[0] for found in cursor.fetchall()}
        # Rows of this batch stay in the staging table until the commit: empty it now, so
        # a second keyed batch in the same transaction does not move them again.
        cursor.execute(f"TRUNCATE {_STAGING}")
    return new


def _insert_if_all_new_sqlite(connection: Connection, records: Sequence[DecisionRecord]) -> bool:
    """executemany the keyed rows in a savepoint; False (and nothing written) if any key or
    id is already stored. SQLAlchemy's insert-or-ignore with RETURNING built a parameter
    set per row in Python (about half of a keyed batch's insert on SQLite); a retried batch
    hits a stored key, rolls the savepoint back and takes that path."""
    statement, processors = _prepared(connection.dialect, keyed=True)
    if _plain_sqlite(connection.dialect) and _plain_sqlite_flag(connection.dialect):
        rows = _sqlite_rows(records, keyed=True)
    else:
        rows = [_keyed_values(r) for r in records]
        if processors:
            rows = [_processed(row, processors) for row in rows]
    connection.exec_driver_sql("SAVEPOINT keyed_insert")
    added = connection.exec_driver_sql(statement, rows).rowcount
    if added != len(rows):
        connection.exec_driver_sql("ROLLBACK TO SAVEPOINT keyed_insert")
    connection.exec_driver_sql("RELEASE SAVEPOINT keyed_insert")
    return added == len(rows)


def _copy_if_all_new(driver: Any, rows: Sequence[tuple[Any, ...]], names: str) -> bool:
    """COPY the keyed rows straight into the table, in a savepoint; False (and nothing
    written) if any key or id is already stored.

    A keyed batch is nearly always a new send, so nothing conflicts: one COPY (1,000 rows in
    55 ms here) instead of COPY into the staging table and INSERT ... SELECT ... ON
    CONFLICT (17 + 72 ms). A retried batch hits a stored key, rolls the savepoint back and
    takes the staging path, which skips what is stored."""
    import psycopg

    statement = f"COPY decision ({names}) FROM STDIN"
    with _driver_errors(driver, statement), driver.cursor() as cursor:
        cursor.execute("SAVEPOINT keyed_copy")
        try:
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT keyed_copy")
            cursor.execute("RELEASE SAVEPOINT keyed_copy")
            return False
        cursor.execute("RELEASE SAVEPOINT keyed_copy")
    return True


def _values(r: DecisionRecord) -> tuple[Any, ...]:
    """A record's values in the order of ``COLUMNS`` (its first fields: a slice)."""
    return r[:_COLUMN_COUNT]


def _keyed_values(r: DecisionRecord) -> tuple[Any, ...]:
    """A record's values in the order of ``KEYED_COLUMNS``."""
    return (*r[:_COLUMN_COUNT], r.holdout)


_COLUMN_COUNT = len(COLUMNS)
assert DecisionRecord._fields[:_COLUMN_COUNT] == COLUMNS


def _copy(driver: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    statement = f"COPY decision ({', '.join(COLUMNS)}) FROM STDIN"
    with _driver_errors(driver, statement), driver.cursor() as cursor:
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)


@contextmanager
def _driver_errors(driver: Any, statement: str) -> Iterator[None]:
    """A psycopg error raised as SQLAlchemy's DBAPIError subclass for it, so the fault
    classifier and the routes' database error answer read it as any other."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise DBAPIError.instance(
            statement, None, exc, psycopg.Error, connection_invalidated=driver.broken
        ) from exc


def _sqlite_rows(
    records: Sequence[DecisionRecord], *, keyed: bool = False
) -> list[tuple[Any, ...]]:
    """``_sqlite_row`` of each record (``keyed``: with ``holdout`` as 0 or 1 after it), the
    time's text computed once per distinct time: a batch's decisions share one, and its
    text was a third of a row's conversion."""
    texts: dict[datetime, str] = {}
    rows = []
    for r in records:
        at = r.created_at
        if at.tzinfo is UTC:  # only UTC times are remembered: equal instants, one text
            text = texts.get(at)
            if text is None:
                text = texts[at] = _sqlite_time(at)
        else:
            text = _sqlite_time(at)
        row = (
            r.id,
            r.experiment_id,
            r.epoch,
            r.arm_id,
            r.segment,
            r.unit_hash,
            r.send_id,
            float(r.propensity),
            int(r.explored),
            r.policy_version,
            text,
        )
        rows.append((*row, int(r.holdout)) if keyed else row)
    return rows


def _sqlite_row(r: DecisionRecord) -> tuple[Any, ...]:
    """A record's values in the order of ``COLUMNS``, as SQLite's bind processors leave them
    (``_plain_sqlite`` checks that they are these): the propensity a float, ``explored`` 0
    or 1, the time as SQLAlchemy's text in UTC (``_sqlite_time``). The generic
    ``_processed`` copied each row into a list and called three processors: about 3 us a
    decision of the flush, in the serving process; this, about 1."""
    return _sqlite_rows((r,))[0]


def _sqlite_time(value: datetime) -> str:
    """A time as SQLite's DateTime stores it ("YYYY-MM-DD HH:MM:SS.ffffff" in UTC): for a
    UTC time, its ISO text cut before the offset; anything else (another zone, naive, which
    the column type refuses) through the column's own processor."""
    if value.tzinfo is UTC:
        return value.isoformat(" ", "microseconds")[:26]
    process = _slow_sqlite_time()
    return cast(str, process(value))


@cache
def _slow_sqlite_time() -> Callable[[Any], Any]:
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    process = table_of(Decision).c["created_at"].type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return process


@cache
def _plain_sqlite(dialect: Dialect) -> bool:
    """Whether ``_sqlite_row`` does what this dialect's bind processors do: SQLite's, with
    processors on the propensity, ``explored`` and the time alone, and the time stored in
    SQLAlchemy's default format."""
    if dialect.name != "sqlite":
        return False
    _statement, processors = _prepared(dialect)
    names = {COLUMNS[index] for index, _ in processors}
    storage = getattr(table_of(Decision).c["created_at"].type.dialect_impl(dialect), "impl", None)
    return names <= {"propensity", "explored", "created_at"} and (
        getattr(storage, "_storage_format", None) == _DEFAULT_FORMAT
    )


@cache
def _plain_sqlite_flag(dialect: Dialect) -> bool:
    """Whether SQLite's processor for ``holdout`` stores a bool as ``int`` does (0 or 1)."""
    process = table_of(Decision).c["holdout"].type.dialect_impl(dialect).bind_processor(dialect)
    return process is None or (process(True), process(False)) == (1, 0)


_DEFAULT_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)


def _processed(
    row: tuple[Any, ...], processors: Sequence[tuple[int, Callable[[Any], Any]]]
) -> tuple[Any, ...]:
    values = list(row)
    for index, process in processors:
        if values[index] is not None:
            values[index] = process(values[index])
    return tuple(values)


@cache
def _prepared(
    dialect: Dialect, *, keyed: bool = False
) -> tuple[str, tuple[tuple[int, Callable[[Any], Any]], ...]]:
    """The INSERT in the driver's parameter style, and the columns whose values the dialect
    converts before binding (e.g. SQLite's datetimes, stored as text). ``keyed``: the
    ``KEYED_COLUMNS``, skipping a row that collides with a stored one."""
    table = table_of(Decision)
    columns = KEYED_COLUMNS if keyed else COLUMNS
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(dialect.identifier_preparer.quote(name) for name in columns)
    marks = ", ".join([marker] * len(columns))
    statement = f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({names}) "
    statement += f"VALUES ({marks})"
    if keyed:
        statement += " ON CONFLICT DO NOTHING"
    processors = []
    for index, name in enumerate(columns):
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((index, process))
    return statement, tuple(processors)
