"""Entry points that wrap the pipeline in one transaction: API events, webhooks, replay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.ingest.pipeline import IngestResult, ingest
from service.inputs import safe_text
from service.models import DeadLetter, utcnow
from service.repositories import events as events_repo
from service.runtime import Runtime
from service.sessions import unit_of_work
from service.webhooks.base import NormalizedEvent, Poison


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
    received_at = utcnow()
    with unit_of_work(runtime.engine, runtime.after_commit_handlers()) as session:
        raw_id = events_repo.add_raw(session, source=source, headers=headers, body=body)
        return ingest(
            session,
            signer=runtime.signer,
            source=source,
            raw_payload_id=raw_id,
            events=events,
            poison=poison,
            received_at=received_at,
        )


def store_undecodable(
    runtime: Runtime, *, source: str, headers: dict[str, Any], body: bytes, reason: str
) -> None:
    """An authenticated body that cannot be parsed at all: keep it, dead-lettered."""
    with unit_of_work(runtime.engine, runtime.after_commit_handlers()) as session:
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
