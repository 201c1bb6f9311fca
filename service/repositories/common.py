"""Dialect-aware statements shared by the repositories."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, LargeBinary, Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import SQLModel


def table_of(model: type[SQLModel]) -> Table:
    """A table model's Table (typed: SQLModel does not declare ``__table__``)."""
    return SQLModel.metadata.tables[str(model.__tablename__)]


def dialect_insert(session: OrmSession, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ON CONFLICT on both of our databases."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(
    session: OrmSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Iterable[str],
    returning: Sequence[str] = (),
) -> list[Any]:
    """Insert rows, skipping those that collide on ``conflict``; return what was inserted."""
    if not rows:
        return []
    conflict = list(conflict)
    if session.get_bind().dialect.name == "postgresql" and _unnestable(table, rows[0]):
        return _insert_ignore_unnest(session, table, rows, conflict, returning)
    if not returning:
        stmt = dialect_insert(session, table).on_conflict_do_nothing(index_elements=conflict)
        session.execute(stmt, [dict(r) for r in rows])
        return []
    # executemany with RETURNING: SQLAlchemy's "insertmanyvalues" batches the rows into
    # multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING statements on both databases
    # (cached, unlike a hand-built .values(list)), returning exactly the rows that were new.
    cols = [table.c[name] for name in returning]
    returning_stmt = (
        dialect_insert(session, table)
        .on_conflict_do_nothing(index_elements=conflict)
        .returning(*cols)
    )
    inserted: list[Any] = list(session.execute(returning_stmt, [dict(r) for r in rows]).all())
    return inserted


def _unnestable(table: Table, row: Mapping[str, Any]) -> bool:
    # JSON and bytes do not travel well as array elements; those tables take the
    # executemany path (they are small: dispatches, raw payloads).
    return all(not isinstance(table.c[name].type, JSON | LargeBinary) for name in row)


def _insert_ignore_unnest(
    session: OrmSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    conflict: list[str],
    returning: Sequence[str],
) -> list[Any]:
    """PostgreSQL: one INSERT ... SELECT FROM unnest(<one array per column>).

    The multi-row VALUES form has a placeholder per value, and psycopg rewrites such a
    query in Python on every call (about 0.1 s for 1,000 events, more than the insert
    itself); a statement with one array per column is short, and its rows are inserted in
    array order, so the caller's sorted order (the lock order) is kept.
    """
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    params: dict[str, list[Any]] = {}
    arrays = []
    for i, column in enumerate(columns):
        process = column.type.bind_processor(dialect)
        values = [row[column.name] for row in rows]
        params[f"p{i}"] = [process(v) for v in values] if process else values
        arrays.append(f"CAST(:p{i} AS {column.type.compile(dialect=dialect)}[])")
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"SELECT * FROM unnest({', '.join(arrays)}) "
        f"ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO NOTHING"
    )
    if returning:
        sql += f" RETURNING {', '.join(quote(r) for r in returning)}"
    result = session.execute(text(sql), params)
    return list(result.all()) if returning else []
