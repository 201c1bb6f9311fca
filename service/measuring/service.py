"""Entry points that wrap the pipeline in one transaction: API events, webhooks, replay."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from service.core import metrics
from service.core.db import is_sqlite
from service.core.faults import describe
from service.core.runtime import Runtime
from service.core.storable import safe_text
from service.measuring import repository as events_repo
from service.measuring.adapters.base import NormalizedEvent, Poison
from service.measuring.api_events import PROVIDER, parse_events_body
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
    with collector_paused(), runtime.unit_of_work() as session:
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


def ingest_api_body(runtime: Runtime, *, body: bytes, content_type: str) -> IngestResult:
    """POST /v1/events's work after authentication: parse the body, then store its events
    (``ingest_payload``). Both run in the caller's thread, a worker's: parsing a batch of
    1,000 events is about 3 ms of CPU that used to hold the event loop (and every /choose
    waiting on it) before the hand-over to the worker."""
    with collector_paused():
        events, poison = parse_events_body(
            body,
            received_at=runtime.clock.now(),
            max_events=runtime.settings.max_events_per_request,
        )
    return ingest_payload(  # pauses the collector itself while it stores
        runtime,
        source=PROVIDER,
        headers={"content-type": content_type},
        body=body,
        events=events,
        poison=poison,
    )


_pause_lock = threading.Lock()
_pausing = 0  # requests inside collector_paused
_resume = False  # whether the collector was on when the first of them paused it
_paused_since: float | None = None  # when the collector was paused (None: not paused now)
# Overlapping batches could keep the collector off for as long as ingestion never idles, and
# cyclic garbage (sessions, tracebacks) would pile up meanwhile: past this, the collector
# runs again until the requests inside have all left.
MAX_PAUSE_SECONDS = 0.5


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is parsed and stored.

    A batch of 1,000 events builds some 15,000 containers that all live until it is
    stored: every collection on the way walked them again and pushed them towards the
    oldest generation, whose full collections then came more often (about 4 of a batch's
    36 ms of CPU on SQLite went to the collector; 0.1 with this). Paused, they are freed by
    their reference counts when the request ends, and the collections owed run on the next
    allocations after it, over what is still alive. Reference counted across threads:
    the collector resumes when the last concurrent batch is done, and only if it was on;
    and once it has been off for ``MAX_PAUSE_SECONDS`` while batches kept overlapping, it
    resumes as the next of them ends."""
    global _pausing, _resume, _paused_since
    with _pause_lock:
        if _pausing == 0:
            _resume = gc.isenabled()
            if _resume:
                gc.disable()
                _paused_since = time.monotonic()
        _pausing += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pausing -= 1
            overdue = (
                _paused_since is not None and time.monotonic() - _paused_since > MAX_PAUSE_SECONDS
            )
            if _resume and (_pausing == 0 or overdue):
                gc.enable()
                # Until every batch inside has left, later ones find the collector on.
                _resume, _paused_since = False, None


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
