"""The ingestion pipeline: one transaction per request, nothing lost or counted twice."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlmodel import Session

from service.core.sessions import EventsCounted, after_commit
from service.core.tokens import DecisionSigner, InvalidToken
from service.core.vocabulary import EXPOSURE
from service.deciding import repository as decisions_repo
from service.deciding.repository import DecisionRef
from service.experiments import repository as experiments_repo
from service.measuring import bulk
from service.measuring import repository as events_repo
from service.measuring.adapters.base import NormalizedEvent, Poison
from service.measuring.bulk import EventKey
from service.measuring.counting import EXPOSURE_TYPES, CountableEvent, add_counts, metrics_for
from service.models import DeadLetter, Experiment, as_utc

# An event whose experiment is gone: the default attribution window (DESIGN).
DEFAULT_WINDOW = timedelta(hours=168.0)


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
    """Store, attribute and count one request's events (the caller's transaction)."""
    batch = _Batch(source=source, raw_payload_id=raw_payload_id, received_at=received_at)
    for p in poison:
        batch.reject(p.index, p.event_key, p.reason, p.raw_text, "unknown")
    candidates = _verified(session, signer, events, poison, batch)
    decisions = decisions_repo.get_many(session, ids=[c.decision_id for c in candidates])
    experiments = experiments_repo.get_many(
        session, experiment_ids={d.experiment_id for d in decisions.values()}
    )
    exposure_at = _exposure_times(session, candidates, decisions, experiments)
    _attribute(batch, candidates, decisions, experiments, exposure_at)
    stored = bulk.store_events(session, rows=list(batch.rows.values()), claims=batch.claims)
    _tally(batch, stored)
    add_counts(
        session,
        claimed=sorted(stored.firsts, key=stored.firsts.__getitem__),  # event id order
        valued=batch.valued(stored),
        decisions=decisions,
    )
    _keep_dead_letters(session, batch)
    after_commit(session, EventsCounted(source, batch.result.outcomes))
    return batch.result


class _Candidate(NamedTuple):
    """An event with one of its decision ids, verified (the token's experiment is the
    attribution of an event whose decision is not stored yet). A named tuple: a batch
    makes one per event, and a frozen dataclass costs three times as much to build."""

    position: int  # in the request body
    event: NormalizedEvent
    decision_id: str
    token_experiment: int


@dataclass
class _Batch:
    """One request's events on their way through the steps of ``ingest``."""

    source: str
    raw_payload_id: int | None
    received_at: datetime
    result: IngestResult = field(default_factory=IngestResult)
    dead: list[DeadLetter] = field(default_factory=list)
    # The rows to store, by key (duplicates within the request dropped), and the first
    # events each accepted row claims if it is new.
    rows: dict[EventKey, dict[str, Any]] = field(default_factory=dict)
    claims: list[bulk.Claim] = field(default_factory=list)

    def reject(self, index: int, event_key: str | None, reason: str, raw: str, kind: str) -> None:
        self.result.rejected.append({"index": index, "event_id": event_key, "reason": reason})
        self.result.dead_lettered += 1
        self.result.outcomes[(kind, "dead_lettered")] += 1
        self.dead.append(
            DeadLetter(
                source=self.source, raw_payload_id=self.raw_payload_id, reason=reason, event=raw
            )
        )

    def valued(self, stored: bulk.Stored) -> list[tuple[str, str, float]]:
        """(decision id, type, value) of the new accepted events with a value, in event id
        order (the order in which `stats rebuild` adds them)."""
        found = sorted(
            (event_id, row["decision_id"], row["type"], float(row["value"]))
            for key, row in self.rows.items()
            if row["value"]
            and row["outcome"] == "accepted"
            and (event_id := stored.event_ids.get(key)) is not None
        )
        return [(decision_id, kind, value) for _, decision_id, kind, value in found]


def _verified(
    session: Session,
    signer: DecisionSigner,
    events: Sequence[NormalizedEvent],
    poison: Sequence[Poison],
    batch: _Batch,
) -> list[_Candidate]:
    """Each event with each of its decision ids that verifies; an event without any is
    ignored, an id that does not verify is rejected."""
    resolved = _resolve_dispatches(session, events)
    wanted: list[tuple[int, NormalizedEvent, str]] = []
    for index, event in zip(_body_positions(len(events), poison), events, strict=True):
        ids = event.decision_ids or resolved.get(event.dispatch_id or "", ())
        if not ids or event.type is None:
            batch.result.ignored += 1
            batch.result.outcomes[(event.type or "unknown", "ignored")] += 1
            continue
        for decision_id in ids:
            wanted.append((index, event, decision_id))
    verdicts = signer.verify_many([decision_id for _, _, decision_id in wanted])
    candidates: list[_Candidate] = []
    for (index, event, decision_id), verdict in zip(wanted, verdicts, strict=True):
        if isinstance(verdict, InvalidToken):
            reason = f"decision id rejected: {verdict}"
            batch.reject(index, event.event_key, reason, _raw(event), event.type or "unknown")
            continue
        candidates.append(_Candidate(index, event, decision_id, verdict))
    return candidates


def _attribute(
    batch: _Batch,
    candidates: Sequence[_Candidate],
    decisions: dict[str, DecisionRef],
    experiments: dict[int, Experiment],
    exposure_at: dict[str, datetime],
) -> None:
    """Build each event's row with its decision's attribution and its outcome, and the
    first events an accepted one claims."""
    windows = {eid: timedelta(hours=e.attribution_window_hours) for eid, e in experiments.items()}
    exposure_events = {eid: e.exposure_event for eid, e in experiments.items()}
    # Which first events an accepted event claims depends only on these three.
    metrics: dict[tuple[str, str | None, str], list[str]] = {}
    rows, claims, result = batch.rows, batch.claims, batch.result
    for candidate in candidates:
        event, decision_id = candidate.event, candidate.decision_id
        key = (event.provider, event.event_key, decision_id)
        if key in rows:
            result.duplicates += 1
            result.outcomes[(event.type or "unknown", "duplicate")] += 1
            continue
        decision = decisions.get(decision_id)
        occurred_at = event.occurred_at
        if occurred_at.tzinfo is not UTC:  # parsed events are in UTC already
            occurred_at = as_utc(occurred_at)
        outcome = _outcome(event, occurred_at, decision, windows, exposure_at)
        rows[key] = {
            "provider": event.provider,
            "event_key": event.event_key,
            "decision_id": decision_id,
            "experiment_id": decision.experiment_id if decision else candidate.token_experiment,
            "arm_id": decision.arm_id if decision else None,
            "epoch": decision.epoch if decision else None,
            "segment": decision.segment if decision else None,
            "type": event.type,
            "provider_type": event.provider_type[:64],
            "name": event.name,
            "value": event.value,
            "machine": event.machine,
            "occurred_at": occurred_at,
            "received_at": batch.received_at,
            "raw_payload_id": batch.raw_payload_id,
            "outcome": outcome,
        }
        if outcome == "accepted" and decision is not None and event.type is not None:
            exposure_event = exposure_events.get(decision.experiment_id, "decision")
            wanted = (event.type, event.name, exposure_event)
            if wanted not in metrics:
                countable = CountableEvent(0, "", event.type, event.name, None, occurred_at)
                metrics[wanted] = metrics_for(countable, exposure_event)
            for metric in metrics[wanted]:
                claims.append((key, metric))


def _tally(batch: _Batch, stored: bulk.Stored) -> None:
    """Count each row's outcome: new rows by their outcome, the others as duplicates."""
    result = batch.result
    for key, row in batch.rows.items():
        if key not in stored.event_ids:
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


def _keep_dead_letters(session: Session, batch: _Batch) -> None:
    dead = batch.dead
    if dead and batch.raw_payload_id is not None:
        # A replayed payload rejects the same events again: keep one dead letter for each.
        known = events_repo.dead_letter_keys(session, raw_payload_id=batch.raw_payload_id)
        dead = [d for d in dead if (d.reason, d.event) not in known]
    if dead:
        events_repo.add_dead_letters(session, rows=dead)


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
    candidates: Sequence[_Candidate],
    decisions: dict[str, DecisionRef],
    experiments: dict[int, Experiment],
) -> dict[str, datetime]:
    """When each decision was exposed: the decision itself, or (exposure event
    `delivered`) the earliest delivered/open/click/conversion known so far."""
    times: dict[str, datetime] = {}
    delivered: set[str] = set()
    for decision_id, decision in decisions.items():
        experiment = experiments.get(decision.experiment_id)
        created = decision.created_at  # read back in UTC
        times[decision_id] = created if created.tzinfo is UTC else as_utc(created)
        if experiment is not None and experiment.exposure_event == "delivered":
            delivered.add(decision_id)
    if not delivered:
        return times
    stored = events_repo.first_events(session, decision_ids=delivered, metric=EXPOSURE)
    earliest: dict[str, datetime] = {d: as_utc(f.occurred_at) for d, f in stored.items()}
    for candidate in candidates:
        event, decision_id = candidate.event, candidate.decision_id
        if decision_id in times and event.type in EXPOSURE_TYPES and decision_id in delivered:
            at = as_utc(event.occurred_at)
            if decision_id not in earliest or at < earliest[decision_id]:
                earliest[decision_id] = at
    times.update(earliest)
    return times


def _outcome(
    event: NormalizedEvent,
    occurred_at: datetime,
    decision: DecisionRef | None,
    windows: dict[int, timedelta],
    exposure_at: dict[str, datetime],
) -> str:
    if decision is None:
        return "orphan"
    if event.machine:
        return "machine"
    window = windows.get(decision.experiment_id, DEFAULT_WINDOW)
    if occurred_at - exposure_at[decision.id] > window:
        return "late"
    return "accepted"
