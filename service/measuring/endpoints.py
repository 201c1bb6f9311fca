"""Measuring: POST /v1/events (scope ingest)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from service.core.deps import IngestKey, RuntimeDep
from service.measuring.api_events import PROVIDER, parse_events_body
from service.measuring.schemas import EVENTS_BODY_SCHEMA, IngestOut
from service.measuring.service import collector_paused, ingest_payload

router = APIRouter(prefix="/v1", tags=["measuring"])


@router.post("/events", response_model=IngestOut, openapi_extra=EVENTS_BODY_SCHEMA)
async def post_events(request: Request, runtime: RuntimeDep, _key: IngestKey) -> IngestOut:
    """One event or a list. Idempotent on event_id: re-posting changes nothing."""
    body = await request.body()
    with collector_paused():
        events, poison = parse_events_body(
            body,
            received_at=runtime.clock.now(),
            max_events=runtime.settings.max_events_per_request,
        )
    result = await run_in_threadpool(
        ingest_payload,
        runtime,
        source=PROVIDER,
        headers={"content-type": request.headers.get("content-type", "")},
        body=body,
        events=events,
        poison=poison,
    )
    return IngestOut.model_validate(result.body())
