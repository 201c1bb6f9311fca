"""Admin operations: privacy deletion, raw payload retention."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from service.repositories import decisions as decisions_repo
from service.repositories import events as events_repo
from service.sessions import UnitForgotten, after_commit
from service.sessions import now as now_of
from service.tokens import DecisionSigner


def forget_unit(session: Session, signer: DecisionSigner, unit_id: str) -> int:
    """Remove what is stored about a unit: decisions keep their counts, lose the unit."""
    forgotten = decisions_repo.forget_unit(session, unit_hash=signer.unit_hash(unit_id))
    after_commit(session, UnitForgotten())
    return forgotten


def purge_raw_payloads(session: Session, *, retention_days: int) -> int:
    return events_repo.purge_raw_before(
        session, before=now_of(session) - timedelta(days=retention_days)
    )
