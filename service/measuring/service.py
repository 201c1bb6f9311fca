"""Entry points that wrap the pipeline in one transaction: API events, webhooks, replay."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from service.core import metrics
from service.core.db import is_sqlite
from service.core.faults import describe
from service.core.runtime import Runtime
from service.core.storable import safe_text
from service.measuring import repository as events_repo
from service.measuring.adapters.base import NormalizedEvent, Poison
from service.measuring.orphans import resolve_landed
from service.measuring.pipeline import IngestResult, ingest
from service.models import DeadLetter

log = logging.getLogger("banditloop.ingest")


def ingest_payload(
    runtime: Runtime,
    *,
    source: str,
    headers: dict[str, Any],
    body: bytes,
    events: Sequence[NormalizedEvent],
    poison: Sequence[Poison] = (),
) -> IngestResult:
    """Store the raw payload and its events in one transaction; answer after commit."""
    received_at = runtime.clock.now()
    with runtime.unit_of_work() as session:
        raw_id = events_repo.add_raw(session, source=source, headers=headers, body=body)
        result = ingest(
            session,
            signer=runtime.signer,
            source=source,
            raw_payload_id=raw_id,
            events=events,
            poison=poison,
            received_at=received_at,
        )
    # SQLite has one writer: this request saw every decision committed before it, and a
    # later flush sees its orphans. Only concurrent writers (PostgreSQL) need the re-check.
    if result.orphan_decisions and not is_sqlite(runtime.engine):
        _count_landed_orphans(runtime, result.orphan_decisions)
    return result


def _count_landed_orphans(runtime: Runtime, decision_ids: set[str]) -> None:
    """A decision flushed while this request stored its orphans saw none of them (they were
    not committed yet), and this request did not see it: look again now that both are
    committed. The events are durable already, so a failure here only defers the count to
    the next `stats rebuild`; the caller still gets its answer."""
    try:
        with runtime.unit_of_work() as session:
            resolved = resolve_landed(session, decision_ids=decision_ids)
    except SQLAlchemyError as exc:
        log.warning("orphans not re-checked after ingest: %s", describe(exc))
        return
    for outcome, n in resolved.items():
        metrics.ORPHANS_RESOLVED.labels(outcome).inc(n)


def store_undecodable(
    runtime: Runtime, *, source: str, headers: dict[str, Any], body: bytes, reason: str
) -> None:
    """An authenticated body that cannot be parsed at all: keep it, dead-lettered."""
    with runtime.unit_of_work() as session:
        raw_id = events_repo.add_raw(session, source=source, headers=headers, body=body)
        events_repo.add_dead_letters(
            session,
            rows=[
                DeadLetter(
                    source=source,
                    raw_payload_id=raw_id,
                    reason=reason,
                    event=safe_text(body[:10_000].decode("utf-8", "replace")),
                )
            ],
        )
