"""Dialect-aware statements shared by the repositories."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.sql.dml import Insert

# SQLite allows 32,766 bound parameters per statement; stay well inside it.
SQL_PARAMETER_BUDGET = 16_000


def dialect_insert(session: OrmSession, table: Table) -> Insert:
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
    if not returning:
        stmt = dialect_insert(session, table).on_conflict_do_nothing(index_elements=conflict)
        session.execute(stmt, [dict(r) for r in rows])
        return []
    # One multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING per chunk: both databases
    # return exactly the rows that were new, which executemany cannot report portably.
    cols = [table.c[name] for name in returning]
    per_chunk = max(1, SQL_PARAMETER_BUDGET // max(1, len(rows[0])))
    inserted: list[Any] = []
    for start in range(0, len(rows), per_chunk):
        chunk = [dict(r) for r in rows[start : start + per_chunk]]
        stmt = (
            dialect_insert(session, table)
            .values(chunk)
            .on_conflict_do_nothing(index_elements=conflict)
            .returning(*cols)
        )
        inserted.extend(session.execute(stmt).all())
    return inserted
