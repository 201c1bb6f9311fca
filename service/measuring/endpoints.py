"""Measuring: POST /v1/events (scope ingest)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from service.core.deps import IngestKey, RuntimeDep
from service.measuring.schemas import EVENTS_BODY_SCHEMA, IngestOut
from service.measuring.service import ingest_api_body

router = APIRouter(prefix="/v1", tags=["measuring"])


@router.post("/events", response_model=IngestOut, openapi_extra=EVENTS_BODY_SCHEMA)
async def post_events(request: Request, runtime: RuntimeDep, _key: IngestKey) -> IngestOut:
    """One event or a list. Idempotent on event_id: re-posting changes nothing."""
    body = await request.body()
    result = await run_in_threadpool(
        ingest_api_body,
        runtime,
        body=body,
        content_type=request.headers.get("content-type", ""),
    )
    return IngestOut.model_validate(result.body())
