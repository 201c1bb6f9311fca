"""Orphans: events stored before their decision. They count once the decision lands.

An event whose decision is not stored yet (the decision log flushes every 200 ms; a stalled
database holds it longer) is kept with outcome ``orphan`` and not counted. When the decision
is written, its orphans get the decision's attribution and the outcome they would have had
on arrival (accepted, late, or machine) and the accepted ones are counted through the same
first-event claims as live ingestion. This runs on the flush that writes the decision, after
an ingest that stored orphans (the decision may have landed meanwhile), and in
`stats rebuild`. An orphan whose decision never lands stays an uncounted orphan.

Two writers can see the same orphan (a flush and a concurrent ingest); the conditional
update in ``claim_orphans`` lets exactly one of them count it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlmodel import Session

from service.core.vocabulary import EXPOSURE
from service.deciding import repository as decisions_repo
from service.experiments import repository as experiments_repo
from service.measuring import repository as events_repo
from service.measuring.counting import EXPOSURE_TYPES, CountableEvent, count_events
from service.measuring.stats_repository import DecisionLike
from service.models import Experiment, OutcomeEvent, as_utc

DEFAULT_WINDOW_HOURS = 168.0


def resolve_orphans(session: Session, *, decisions: Mapping[str, DecisionLike]) -> Counter[str]:
    """Attribute and count the stored orphans of these (stored) decisions; returns how many
    took each outcome."""
    orphans = events_repo.orphans_of(session, decision_ids=decisions.keys())
    return _resolve(session, orphans, decisions)


def resolve_landed(session: Session, *, decision_ids: Iterable[str]) -> Counter[str]:
    """For an ingest that stored orphans: resolve those whose decision is stored by now."""
    decisions = decisions_repo.get_many(session, ids=decision_ids)
    if not decisions:
        return Counter()
    return resolve_orphans(session, decisions=decisions)


def resolve_all_landed(session: Session, *, experiment_id: int | None = None) -> Counter[str]:
    """Every orphan whose decision is stored (`stats rebuild`), in chunks."""
    resolved: Counter[str] = Counter()
    after = 0
    while True:
        orphans = events_repo.landed_orphans(
            session, after_id=after, limit=5000, experiment_id=experiment_id
        )
        if not orphans:
            return resolved
        after = orphans[-1].id or after
        decisions = decisions_repo.get_many(session, ids=[o.decision_id for o in orphans])
        resolved.update(_resolve(session, orphans, decisions))


def _resolve(
    session: Session, orphans: Sequence[OutcomeEvent], decisions: Mapping[str, DecisionLike]
) -> Counter[str]:
    orphans = [o for o in orphans if o.decision_id in decisions]
    if not orphans:
        return Counter()
    experiments = experiments_repo.get_many(
        session, experiment_ids={decisions[o.decision_id].experiment_id for o in orphans}
    )
    exposed = _exposure_times(session, orphans, decisions, experiments)
    groups: dict[tuple[int, int, str, int, str], list[int]] = defaultdict(list)
    for orphan in orphans:
        decision = decisions[orphan.decision_id]
        outcome = _outcome(orphan, experiments.get(decision.experiment_id), exposed)
        key = (decision.experiment_id, decision.epoch, decision.segment, decision.arm_id, outcome)
        groups[key].append(orphan.id or 0)
    outcome_of: dict[int, str] = {}
    for (experiment_id, epoch, segment, arm_id, outcome), ids in sorted(groups.items()):
        values = {
            "experiment_id": experiment_id,
            "epoch": epoch,
            "segment": segment,
            "arm_id": arm_id,
            "outcome": outcome,
        }
        for event_id in events_repo.claim_orphans(session, ids=ids, values=values):
            outcome_of[event_id] = outcome
    countable = [
        CountableEvent(o.id or 0, o.decision_id, o.type, o.name, o.value, o.occurred_at)
        for o in orphans
        if outcome_of.get(o.id or 0) == "accepted"
    ]
    count_events(
        session,
        events=countable,
        decisions=decisions,
        exposure_events={eid: e.exposure_event for eid, e in experiments.items()},
    )
    return Counter(outcome_of.values())


def _exposure_times(
    session: Session,
    orphans: Sequence[OutcomeEvent],
    decisions: Mapping[str, DecisionLike],
    experiments: Mapping[int, Experiment],
) -> dict[str, datetime]:
    """As on arrival: the decision's time, or (exposure event `delivered`) the earliest
    delivered/open/click/conversion known, the orphans included."""
    times = {o.decision_id: as_utc(decisions[o.decision_id].created_at) for o in orphans}
    delivered = {
        o.decision_id
        for o in orphans
        if (e := experiments.get(decisions[o.decision_id].experiment_id)) is not None
        and e.exposure_event == "delivered"
    }
    if not delivered:
        return times
    stored = events_repo.first_events(session, decision_ids=delivered, metric=EXPOSURE)
    earliest = {d: as_utc(f.occurred_at) for d, f in stored.items()}
    for orphan in orphans:
        if orphan.decision_id in delivered and orphan.type in EXPOSURE_TYPES and not orphan.machine:
            at = as_utc(orphan.occurred_at)
            if orphan.decision_id not in earliest or at < earliest[orphan.decision_id]:
                earliest[orphan.decision_id] = at
    times.update(earliest)
    return times


def _outcome(
    orphan: OutcomeEvent, experiment: Experiment | None, exposed: Mapping[str, datetime]
) -> str:
    if orphan.machine:
        return "machine"
    hours = experiment.attribution_window_hours if experiment else DEFAULT_WINDOW_HOURS
    if as_utc(orphan.occurred_at) - exposed[orphan.decision_id] > timedelta(hours=hours):
        return "late"
    return "accepted"
