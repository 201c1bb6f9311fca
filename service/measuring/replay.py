"""Re-feed stored raw payloads through the pipeline; idempotent by the events' unique keys.

Signatures were checked when the payloads arrived, so replay parses without verifying
(old timestamps would fail the tolerance anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from service.core.runtime import Runtime
from service.core.sessions import now as now_of
from service.measuring import repository as events_repo
from service.measuring.adapters import ADAPTERS, WebhookPayloadError, flag_machine
from service.measuring.adapters.base import NormalizedEvent, Poison
from service.measuring.api_events import PROVIDER as API_SOURCE
from service.measuring.api_events import parse_events_body
from service.measuring.pipeline import ingest
from service.measuring.rebuild import rebuild_stats
from service.models import RawPayload

MAX_REPLAY_EVENTS = 1_000_000


@dataclass
class ReplayResult:
    payloads: int = 0
    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0
    dead_lettered: int = 0
    unparseable: list[int] = field(default_factory=list)


def _parse(runtime: Runtime, raw: RawPayload) -> tuple[list[NormalizedEvent], list[Poison]]:
    body = bytes(raw.body)
    if raw.source == API_SOURCE:
        return parse_events_body(body, received_at=raw.received_at, max_events=MAX_REPLAY_EVENTS)
    adapter = ADAPTERS[raw.source]
    headers = {k.lower(): v for k, v in (raw.headers or {}).items()}
    batch = adapter.parse(body, headers)
    events = flag_machine(
        batch.events, scanner_click_seconds=runtime.settings.scanner_click_seconds
    )
    return events, batch.poison


def replay(
    runtime: Runtime,
    *,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ReplayResult:
    result = ReplayResult()
    after = 0
    while True:
        with runtime.unit_of_work() as session:
            page = events_repo.raw_payloads(
                session, source=source, since=since, until=until, after_id=after, limit=100
            )
        if not page:
            # Re-fed events that were already stored are duplicates and count nothing, so
            # statistics lost since (a wipe) come back only from a recount: rebuild them
            # from the stored decisions and events, which is exact and idempotent.
            with runtime.unit_of_work() as session:
                rebuild_stats(session)
            return result
        for raw in page:
            assert raw.id is not None
            after = raw.id
            result.payloads += 1
            try:
                events, poison = _parse(runtime, raw)
            except (WebhookPayloadError, KeyError, ValueError):
                result.unparseable.append(raw.id)
                continue
            # Poison was dead-lettered on arrival; re-feeding it would only add copies.
            with runtime.unit_of_work() as session:
                outcome = ingest(
                    session,
                    signer=runtime.signer,
                    source=raw.source,
                    raw_payload_id=raw.id,
                    events=events,
                    poison=(),
                    received_at=now_of(session),
                )
            result.accepted += outcome.accepted
            result.duplicates += outcome.duplicates
            result.ignored += outcome.ignored
            result.dead_lettered += outcome.dead_lettered
