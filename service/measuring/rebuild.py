"""`banditloop stats rebuild`: recompute statistics exactly from decisions and events.

Exposures are recounted from stored decisions; events are walked in id order through the
same counting code live ingestion uses, so the result matches the incremental counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import delete, select
from sqlmodel import Session, col

from service.core.vocabulary import EXPOSURE
from service.deciding import repository as decisions_repo
from service.experiments import repository as experiments_repo
from service.measuring import repository as events_repo
from service.measuring import stats_repository as stats_repo
from service.measuring.counting import CountableEvent, count_events
from service.measuring.orphans import resolve_all_landed
from service.measuring.stats_repository import StatKey
from service.models import Decision, FirstEvent, hour_of

CHUNK = 5000


def rebuild_stats(session: Session, *, experiment_id: int | None = None) -> dict[str, int]:
    """Wipe and recompute statistics (one experiment, or all) in the caller's transaction."""
    exposure_events = {
        e.id: e.exposure_event for e in experiments_repo.list_all(session) if e.id is not None
    }
    # Orphans whose decision has landed since (live ingestion counts them on the flush;
    # data from before that existed, or a resolution cut short, is settled here).
    resolve_all_landed(session, experiment_id=experiment_id)
    stats_repo.wipe(session, experiment_id=experiment_id)
    _wipe_first_events(session, experiment_id)
    decisions = _recount_exposures(session, experiment_id, exposure_events)
    events = _recount_events(session, experiment_id, exposure_events)
    return {"decisions": decisions, "events": events}


def _wipe_first_events(session: Session, experiment_id: int | None) -> None:
    stmt = delete(FirstEvent)
    if experiment_id is not None:
        ids = select(col(Decision.id)).where(col(Decision.experiment_id) == experiment_id)
        stmt = stmt.where(col(FirstEvent.decision_id).in_(ids))
    session.execute(stmt)


def _recount_exposures(
    session: Session, experiment_id: int | None, exposure_events: dict[int, str]
) -> int:
    stmt = select(
        col(Decision.experiment_id),
        col(Decision.epoch),
        col(Decision.segment),
        col(Decision.arm_id),
        col(Decision.created_at),
    )
    if experiment_id is not None:
        stmt = stmt.where(col(Decision.experiment_id) == experiment_id)
    seen = 0

    def exposures() -> Iterator[tuple[StatKey, datetime]]:
        nonlocal seen
        for exp_id, epoch, segment, arm_id, created_at in session.execute(stmt):
            seen += 1
            if exposure_events.get(exp_id, "decision") == "decision":
                yield (exp_id, epoch, segment, arm_id, hour_of(created_at), EXPOSURE), created_at

    stats_repo.add_deltas(session, deltas=stats_repo.exposure_deltas(exposures()))
    return seen


def _recount_events(
    session: Session, experiment_id: int | None, exposure_events: dict[int, str]
) -> int:
    after = 0
    counted = 0
    while True:
        rows = events_repo.events_after(
            session, after_id=after, limit=CHUNK, experiment_id=experiment_id
        )
        if not rows:
            return counted
        after = rows[-1].id or after
        accepted = [r for r in rows if r.outcome == "accepted"]
        decisions = decisions_repo.get_many(session, ids=[r.decision_id for r in accepted])
        count_events(
            session,
            events=[
                CountableEvent(r.id or 0, r.decision_id, r.type, r.name, r.value, r.occurred_at)
                for r in accepted
            ],
            decisions=decisions,
            exposure_events=exposure_events,
        )
        counted += len(accepted)
