"""Dialect-aware statements shared by the repositories."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    ColumnDefault,
    LargeBinary,
    String,
    Table,
    bindparam,
    cast,
    func,
    literal_column,
    text,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import SQLModel

from service.core.sessions import now as now_of
from service.models.base import DefaultTime


def table_of(model: type[SQLModel]) -> Table:
    """A table model's Table (typed: SQLModel does not declare ``__table__``)."""
    return SQLModel.metadata.tables[str(model.__tablename__)]


def dialect_insert(session: OrmSession, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ON CONFLICT on both of our databases."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def in_json(session: OrmSession, target: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """``target IN values`` with the values as one JSON parameter, unpacked by the server.

    An IN list has a placeholder per value: SQLAlchemy expands it in Python on every call
    and psycopg then rewrites the query in Python again (for 1,000 ids that cost more than
    the lookup); SQLite also caps the number of placeholders. One JSON text is encoded in C
    and unpacked in C, and the statement is the same for any number of values (cached)."""
    document = bindparam(None, orjson.dumps(list(values)).decode(), type_=String)
    if session.get_bind().dialect.name == "postgresql":
        wanted = sa_select(func.json_array_elements_text(cast(document, postgresql.JSON)))
    else:
        wanted = sa_select(literal_column("value")).select_from(func.json_each(document))
    condition: ColumnElement[bool] = target.in_(wanted)
    return condition


def insert_ignore(
    session: OrmSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Iterable[str] | None,
    returning: Sequence[str] = (),
) -> list[Any]:
    """Insert rows, skipping those that collide on ``conflict``; return what was inserted."""
    if not rows:
        return []
    rows = _dated(session, table, rows)
    # conflict=None: skip a row that violates any unique constraint (PostgreSQL and SQLite
    # both allow ON CONFLICT DO NOTHING without a target).
    elements = list(conflict) if conflict is not None else None
    if session.get_bind().dialect.name == "postgresql":
        complete = _with_python_defaults(table, rows)
        if complete is not None:
            return _insert_ignore_json(session, table, complete, elements, returning)
    if not returning:
        stmt = dialect_insert(session, table).on_conflict_do_nothing(index_elements=elements)
        session.execute(stmt, [dict(r) for r in rows])
        return []
    # executemany with RETURNING: SQLAlchemy's "insertmanyvalues" batches the rows into
    # multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING statements on both databases
    # (cached, unlike a hand-built .values(list)), returning exactly the rows that were new.
    cols = [table.c[name] for name in returning]
    returning_stmt = (
        dialect_insert(session, table)
        .on_conflict_do_nothing(index_elements=elements)
        .returning(*cols)
    )
    inserted: list[Any] = list(session.execute(returning_stmt, [dict(r) for r in rows]).all())
    return inserted


def _dated(
    session: OrmSession, table: Table, rows: Sequence[Mapping[str, Any]]
) -> Sequence[Mapping[str, Any]]:
    """A core INSERT bypasses the flush: give the row timestamps nobody gave (default
    ``DefaultTime``) the unit of work's time here, as the flush would."""
    undated = [
        column.name
        for column in table.c
        if column.name not in rows[0]
        and isinstance(column.default, ColumnDefault)
        and column.default.is_callable
        and isinstance(column.default.arg(None), DefaultTime)
    ]
    if not undated:
        return rows
    at = now_of(session)
    return [{**row, **dict.fromkeys(undated, at)} for row in rows]


def _with_python_defaults(
    table: Table, rows: Sequence[Mapping[str, Any]]
) -> Sequence[Mapping[str, Any]] | None:
    """The rows with the columns' Python-side defaults filled in (a textual INSERT does
    not apply them), or None when they cannot travel as JSON (bytes, SQL defaults)."""
    if any(isinstance(table.c[name].type, LargeBinary) for name in rows[0]):
        return None
    filled: dict[str, Any] = {}
    for column in table.c:
        default = column.default
        if column.name in rows[0] or default is None:
            continue
        if not isinstance(default, ColumnDefault) or not (default.is_scalar or default.is_callable):
            return None
        # One value for the whole batch: callables are timestamps (utcnow).
        filled[column.name] = default.arg(None) if default.is_callable else default.arg
    return [{**row, **filled} for row in rows] if filled else rows


def _as_json_rows(table: Table, rows: Sequence[Mapping[str, Any]], dialect: Any) -> str:
    """The rows as one JSON array. Times become ISO 8601 with their offset (naive ones
    are refused, as UTCDateTime does); JSON values are embedded as they are; any other
    type with a bind processor goes through it."""
    processors = []
    for name in rows[0]:
        column_type = table.c[name].type
        if isinstance(column_type, JSON) or _python_type(column_type) in (datetime, date):
            continue
        process = column_type.bind_processor(dialect)
        if process is not None:
            processors.append((name, process))
    if processors:
        rows = [
            {**row, **{name: process(row[name]) for name, process in processors}} for row in rows
        ]
    if _orjson_safe(table, rows):
        try:
            # orjson: a fifth of the standard encoder's time for 1,000 rows. Times still go
            # through _json_default (naive ones refused); anything orjson refuses (a lone
            # surrogate, an integer past 64 bits) takes the standard encoder, as before.
            return orjson.dumps(
                list(rows), default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME
            ).decode()
        except orjson.JSONEncodeError:
            pass
    return json.dumps(list(rows), default=_json_default, separators=(",", ":"))


def _orjson_safe(table: Table, rows: Sequence[Mapping[str, Any]]) -> bool:
    """orjson writes NaN and infinities as null where the standard encoder writes tokens
    PostgreSQL refuses: only rows without JSON columns and with finite floats take it, so
    a non-finite number still fails as it always did instead of being stored as NULL."""
    floats = []
    for name in rows[0]:
        column_type = table.c[name].type
        if isinstance(column_type, JSON):
            return False
        if _python_type(column_type) is float:
            floats.append(name)
    return all(row[name] is None or math.isfinite(row[name]) for row in rows for name in floats)


def _python_type(column_type: Any) -> type | None:
    try:
        return column_type.python_type  # type: ignore[no-any-return]
    except NotImplementedError:
        return None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("datetime values must have timezone information")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} through json_populate_recordset")


def _insert_ignore_json(
    session: OrmSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    conflict: list[str] | None,
    returning: Sequence[str],
) -> list[Any]:
    """PostgreSQL: INSERT ... SELECT FROM json_populate_recordset(<the rows as JSON>).

    The multi-row VALUES form has a placeholder per value, and psycopg rewrites such a
    query in Python on every call (about 0.1 s for 1,000 events, more than the insert
    itself); arrays per column are no better (psycopg quotes each element in Python).
    One JSON document is encoded in C on our side and parsed in C by the server, and the
    set keeps its order, so the rows go in in the caller's sorted order (the lock order).
    """
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(name) for name in rows[0])
    target = f"({', '.join(quote(c) for c in conflict)}) " if conflict is not None else ""
    sql = (
        f"INSERT INTO {quote(table.name)} ({names}) "
        f"SELECT {names} FROM json_populate_recordset(NULL::{quote(table.name)}, :rows) "
        f"ON CONFLICT {target}DO NOTHING"
    )
    if returning:
        sql += f" RETURNING {', '.join(quote(r) for r in returning)}"
    result = session.execute(text(sql), {"rows": _as_json_rows(table, rows, dialect)})
    return list(result.all()) if returning else []
