"""What counts (DESIGN.md "What counts"): turn stored, accepted events into statistics.

Shared by live ingestion and `banditloop stats rebuild`, which is why rebuilding gives the
same numbers: both walk the stored events in id order through this one function.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from service.core.vocabulary import EXPOSURE
from service.measuring import repository as events_repo
from service.measuring import stats_repository as stats_repo
from service.measuring.stats_repository import DecisionLike, Delta, StatKey
from service.models import hour_of

# With exposure event `delivered`, the first of these marks the exposure (a click can
# arrive before the delivery report).
EXPOSURE_TYPES = frozenset({"delivered", "open", "click", "conversion"})


@dataclass(frozen=True, slots=True)
class CountableEvent:
    id: int
    decision_id: str
    type: str
    name: str | None
    value: float | None
    occurred_at: datetime


def metrics_for(event: CountableEvent, exposure_event: str) -> list[str]:
    """The first-event metrics an event can claim for its decision."""
    wanted = []
    if exposure_event == "delivered" and event.type in EXPOSURE_TYPES:
        wanted.append(EXPOSURE)
    wanted.append(event.type)
    if event.type == "conversion" and event.name:
        wanted.append(f"conversion:{event.name}")
    return wanted


def stat_key(decision: DecisionLike, metric: str) -> StatKey:
    """Buckets are cohorts: keyed by the decision's hour, whatever the event's time."""
    return (
        decision.experiment_id,
        decision.epoch,
        decision.segment,
        decision.arm_id,
        hour_of(decision.created_at),
        metric,
    )


def count_events(
    session: Session,
    *,
    events: Sequence[CountableEvent],
    decisions: Mapping[str, DecisionLike],
    exposure_events: Mapping[int, str],
) -> None:
    """Claim first events and add the statistics deltas for accepted, stored events."""
    firsts: dict[tuple[str, str], dict[str, object]] = {}
    valued: list[tuple[str, str, float]] = []
    for event in sorted(events, key=lambda e: e.id):
        decision = decisions.get(event.decision_id)
        if decision is None:
            continue
        exposure_event = exposure_events.get(decision.experiment_id, "decision")
        for metric in metrics_for(event, exposure_event):
            key = (event.decision_id, metric)
            if key not in firsts:
                firsts[key] = {
                    "decision_id": event.decision_id,
                    "metric": metric,
                    "event_id": event.id,
                    "occurred_at": event.occurred_at,
                }
        if event.value:
            valued.append((event.decision_id, event.type, float(event.value)))
    new = events_repo.insert_first_events(session, rows=list(firsts.values()))
    # In event id order, as the sums have always been taken.
    claimed = [key for key in firsts if key in new]
    add_counts(session, claimed=claimed, valued=valued, decisions=decisions)


def add_counts(
    session: Session,
    *,
    claimed: Iterable[tuple[str, str]],
    valued: Iterable[tuple[str, str, float]],
    decisions: Mapping[str, DecisionLike],
) -> None:
    """Add the statistics deltas of a batch: one count for each first event it claimed
    (decision id, metric), with the decision's offset in its hour for exposures, and the
    value of each counted event (decision id, type, value) to its type's bucket. Both in
    event id order, the order in which `stats rebuild` walks them."""
    deltas: dict[StatKey, list[float]] = defaultdict(lambda: [0, 0.0])
    exposures: list[tuple[StatKey, datetime]] = []
    for decision_id, metric in claimed:
        decision = decisions[decision_id]
        if metric == EXPOSURE:
            exposures.append((stat_key(decision, metric), decision.created_at))
        else:
            deltas[stat_key(decision, metric)][0] += 1
    for decision_id, event_type, value in valued:
        deltas[stat_key(decisions[decision_id], event_type)][1] += value
    # Values go to event types' rows, never to exposure rows: the two sets of keys are apart.
    merged: dict[StatKey, Delta] = {k: (int(v[0]), float(v[1])) for k, v in deltas.items()}
    merged.update(stats_repo.exposure_deltas(exposures))
    stats_repo.add_deltas(session, deltas=merged)
