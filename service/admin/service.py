"""Admin operations: privacy deletion, raw payload retention, dead letters."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from service.core.sessions import UnitForgotten, after_commit
from service.core.sessions import now as now_of
from service.core.tokens import DecisionSigner
from service.deciding import repository as decisions_repo
from service.measuring import repository as events_repo
from service.models import DeadLetter


def forget_unit(session: Session, signer: DecisionSigner, unit_id: str) -> int:
    """Remove what is stored about a unit: decisions keep their counts, lose the unit."""
    forgotten = decisions_repo.forget_unit(session, unit_hash=signer.unit_hash(unit_id))
    after_commit(session, UnitForgotten())
    return forgotten


def dead_letters(
    session: Session, *, source: str | None, after_id: int, limit: int
) -> list[DeadLetter]:
    """Payloads that could not be processed, oldest first, a page at a time."""
    return events_repo.dead_letters(session, source=source, after_id=after_id, limit=limit)


def purge_raw_payloads(session: Session, *, retention_days: int) -> int:
    return events_repo.purge_raw_before(
        session, before=now_of(session) - timedelta(days=retention_days)
    )
