"""Dialect-aware statements shared by the repositories."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.sql.dml import Insert


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
    # executemany with RETURNING: SQLAlchemy's "insertmanyvalues" batches the rows into
    # multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING statements on both databases
    # (cached, unlike a hand-built .values(list)), returning exactly the rows that were new.
    cols = [table.c[name] for name in returning]
    stmt = (
        dialect_insert(session, table)
        .on_conflict_do_nothing(index_elements=conflict)
        .returning(*cols)
    )
    inserted: list[Any] = list(session.execute(stmt, [dict(r) for r in rows]).all())
    return inserted
