"""Database leases: one holder at a time, expiring if the holder dies."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, update
from sqlmodel import Session, col

from service.core.sessions import now as now_of
from service.core.statements import insert_ignore, table_of
from service.models import Lease


def try_acquire(session: Session, *, name: str, holder: str, seconds: float) -> bool:
    """Take or renew the lease; True if ``holder`` holds it afterwards."""
    now = now_of(session)
    expires = now + timedelta(seconds=seconds)
    insert_ignore(
        session,
        table_of(Lease),
        [{"name": name, "holder": holder, "expires_at": expires}],
        conflict=["name"],
    )
    result = session.execute(
        update(Lease)
        .where(col(Lease.name) == name)
        .where(or_(col(Lease.holder) == holder, col(Lease.expires_at) < now))
        .values(holder=holder, expires_at=expires)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, *, name: str, holder: str) -> None:
    session.execute(
        update(Lease)
        .where(col(Lease.name) == name)
        .where(col(Lease.holder) == holder)
        .values(expires_at=now_of(session) - timedelta(seconds=1))
    )
