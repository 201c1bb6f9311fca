"""Admin operations: privacy deletion, raw payload retention."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from service.db import session_scope
from service.models import utcnow
from service.repositories import decisions as decisions_repo
from service.repositories import events as events_repo
from service.tokens import DecisionSigner


def forget_unit(engine: Engine, signer: DecisionSigner, unit_id: str) -> int:
    """Remove what is stored about a unit: decisions keep their counts, lose the unit."""
    with session_scope(engine) as session:
        return decisions_repo.forget_unit(session, unit_hash=signer.unit_hash(unit_id))


def purge_raw_payloads(engine: Engine, *, retention_days: int) -> int:
    with session_scope(engine) as session:
        return events_repo.purge_raw_before(
            session, before=utcnow() - timedelta(days=retention_days)
        )
