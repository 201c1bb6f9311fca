"""The ingestion pipeline: one transaction per request, nothing lost or counted twice."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from service.core.sessions import EventsCounted, after_commit
from service.core.tokens import DecisionSigner, InvalidToken
from service.core.vocabulary import EXPOSURE
from service.deciding import repository as decisions_repo
from service.deciding.repository import DecisionRef
from service.experiments import repository as experiments_repo
from service.measuring import repository as events_repo
from service.measuring.adapters.base import NormalizedEvent, Poison
from service.measuring.counting import EXPOSURE_TYPES, CountableEvent, count_events
from service.models import DeadLetter, Experiment, as_utc

EventKey = tuple[str, str, str]


@dataclass
class IngestResult:
    """What happened to each event. ``accepted`` counts new stored events; of those,
    ``orphans``, ``late`` and ``machine`` are kept but never counted."""

    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0
    orphans: int = 0
    late: int = 0
    machine: int = 0
    dead_lettered: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    # The decisions this request's orphans wait for (see service.measuring.orphans).
    orphan_decisions: set[str] = field(default_factory=set)

    def body(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "rejected": self.rejected,
            "orphans": self.orphans,
            "late": self.late,
            "machine": self.machine,
        }


def ingest(
    session: Session,
    *,
    signer: DecisionSigner,
    source: str,
    raw_payload_id: int | None,
    events: Sequence[NormalizedEvent],
    poison: Sequence[Poison] = (),
    received_at: datetime,
) -> IngestResult:
    result = IngestResult()
    dead: list[DeadLetter] = []

    def reject(index: int, event_key: str | None, reason: str, raw: str, kind: str) -> None:
        result.rejected.append({"index": index, "event_id": event_key, "reason": reason})
        result.dead_lettered += 1
        result.outcomes[(kind, "dead_lettered")] += 1
        dead.append(
            DeadLetter(source=source, raw_payload_id=raw_payload_id, reason=reason, event=raw)
        )

    for p in poison:
        reject(p.index, p.event_key, p.reason, p.raw_text, "unknown")

    resolved = _resolve_dispatches(session, events)
    candidates: list[tuple[int, NormalizedEvent, str, int]] = []
    for index, event in zip(_body_positions(len(events), poison), events, strict=True):
        ids = event.decision_ids or resolved.get(event.dispatch_id or "", ())
        if not ids or event.type is None:
            result.ignored += 1
            result.outcomes[(event.type or "unknown", "ignored")] += 1
            continue
        for decision_id in ids:
            try:
                token = signer.verify(decision_id)
            except InvalidToken as exc:
                reject(
                    index, event.event_key, f"decision id rejected: {exc}", _raw(event), event.type
                )
                continue
            candidates.append((index, event, decision_id, token.experiment_id))

    decisions = decisions_repo.get_many(session, ids=[c[2] for c in candidates])
    experiments = experiments_repo.get_many(
        session, experiment_ids={d.experiment_id for d in decisions.values()}
    )
    exposure_at = _exposure_times(session, candidates, decisions, experiments)

    rows: dict[EventKey, dict[str, Any]] = {}
    for _index, event, decision_id, token_experiment in candidates:
        key = (event.provider, event.event_key, decision_id)
        if key in rows:
            result.duplicates += 1
            result.outcomes[(event.type or "unknown", "duplicate")] += 1
            continue
        decision = decisions.get(decision_id)
        outcome = _outcome(event, decision, experiments, exposure_at)
        rows[key] = {
            "provider": event.provider,
            "event_key": event.event_key,
            "decision_id": decision_id,
            "experiment_id": decision.experiment_id if decision else token_experiment,
            "arm_id": decision.arm_id if decision else None,
            "epoch": decision.epoch if decision else None,
            "segment": decision.segment if decision else None,
            "type": event.type,
            "provider_type": event.provider_type[:64],
            "name": event.name,
            "value": event.value,
            "machine": event.machine,
            "occurred_at": as_utc(event.occurred_at),
            "received_at": received_at,
            "raw_payload_id": raw_payload_id,
            "outcome": outcome,
        }
    new_ids = events_repo.insert_events(session, rows=list(rows.values()))
    countable: list[CountableEvent] = []
    for key, row in rows.items():
        event_id = new_ids.get(key)
        if event_id is None:
            result.duplicates += 1
            result.outcomes[(row["type"], "duplicate")] += 1
            continue
        result.accepted += 1
        outcome = row["outcome"]
        result.outcomes[(row["type"], outcome)] += 1
        if outcome == "orphan":
            result.orphans += 1
            result.orphan_decisions.add(row["decision_id"])
        elif outcome == "late":
            result.late += 1
        elif outcome == "machine":
            result.machine += 1
        else:
            countable.append(
                CountableEvent(
                    event_id,
                    row["decision_id"],
                    row["type"],
                    row["name"],
                    row["value"],
                    row["occurred_at"],
                )
            )
    count_events(
        session,
        events=countable,
        decisions=decisions,
        exposure_events={eid: e.exposure_event for eid, e in experiments.items()},
    )
    if dead and raw_payload_id is not None:
        # A replayed payload rejects the same events again: keep one dead letter for each.
        known = events_repo.dead_letter_keys(session, raw_payload_id=raw_payload_id)
        dead = [d for d in dead if (d.reason, d.event) not in known]
    if dead:
        events_repo.add_dead_letters(session, rows=dead)
    after_commit(session, EventsCounted(source, result.outcomes))
    return result


def _body_positions(count: int, poison: Sequence[Poison]) -> list[int]:
    """Where each parsed event sat in the request body: the poison took the other places,
    so a rejection names the same index the sender sees in its own payload."""
    taken = {p.index for p in poison}
    positions: list[int] = []
    at = 0
    for _ in range(count):
        while at in taken:
            at += 1
        positions.append(at)
        at += 1
    return positions


def _raw(event: NormalizedEvent) -> str:
    return json.dumps(event.raw, default=str, sort_keys=True)


def _resolve_dispatches(
    session: Session, events: Sequence[NormalizedEvent]
) -> dict[str, tuple[str, ...]]:
    """Braze sends decision ids on send events only: remember them, join later events."""
    remember: dict[tuple[str, str], dict[str, Any]] = {}
    wanted: dict[str, set[str]] = {}
    for event in events:
        if not event.dispatch_id:
            continue
        if event.decision_ids:
            remember.setdefault(
                (event.provider, event.dispatch_id),
                {
                    "provider": event.provider,
                    "dispatch_id": event.dispatch_id,
                    "decision_ids": list(event.decision_ids),
                },
            )
        else:
            wanted.setdefault(event.provider, set()).add(event.dispatch_id)
    if remember:
        events_repo.remember_dispatches(session, rows=list(remember.values()))
    resolved: dict[str, tuple[str, ...]] = {
        row["dispatch_id"]: tuple(row["decision_ids"]) for row in remember.values()
    }
    for provider, dispatch_ids in wanted.items():
        found = events_repo.dispatches(session, provider=provider, dispatch_ids=dispatch_ids)
        resolved.update({k: tuple(v) for k, v in found.items() if k not in resolved})
    return resolved


def _exposure_times(
    session: Session,
    candidates: Sequence[tuple[int, NormalizedEvent, str, int]],
    decisions: dict[str, DecisionRef],
    experiments: dict[int, Experiment],
) -> dict[str, datetime]:
    """When each decision was exposed: the decision itself, or (exposure event
    `delivered`) the earliest delivered/open/click/conversion known so far."""
    times: dict[str, datetime] = {}
    delivered: list[str] = []
    for decision_id, decision in decisions.items():
        experiment = experiments.get(decision.experiment_id)
        times[decision_id] = as_utc(decision.created_at)
        if experiment is not None and experiment.exposure_event == "delivered":
            delivered.append(decision_id)
    if not delivered:
        return times
    stored = events_repo.first_events(session, decision_ids=delivered, metric=EXPOSURE)
    earliest: dict[str, datetime] = {d: as_utc(f.occurred_at) for d, f in stored.items()}
    for _index, event, decision_id, _exp in candidates:
        if decision_id in times and event.type in EXPOSURE_TYPES and decision_id in delivered:
            at = as_utc(event.occurred_at)
            if decision_id not in earliest or at < earliest[decision_id]:
                earliest[decision_id] = at
    times.update(earliest)
    return times


def _outcome(
    event: NormalizedEvent,
    decision: DecisionRef | None,
    experiments: dict[int, Experiment],
    exposure_at: dict[str, datetime],
) -> str:
    if decision is None:
        return "orphan"
    if event.machine:
        return "machine"
    experiment = experiments.get(decision.experiment_id)
    window = timedelta(hours=experiment.attribution_window_hours if experiment else 168.0)
    exposed = exposure_at.get(decision.id, as_utc(decision.created_at))
    if as_utc(event.occurred_at) - exposed > window:
        return "late"
    return "accepted"
