"""The baseline for bench/choose: a bare FastAPI `POST /v1/choose` returning a constant body.

The body is the JSON the real service answered with, passed in BENCH_BARE_BODY, so both
servers render and send the same number of bytes. It runs the service's own event-loop lag
probe (`service/core/loop_lag.py`, same interval) and serves `GET /metrics`, so the bench
reads the same pause figure from both servers. Run: uvicorn --app-dir bench/choose bare_app:app
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.core.loop_lag import watch_event_loop
from service.core.settings import Settings


def create_app(body: dict[str, object]) -> FastAPI:
    default = Settings.model_fields["event_loop_probe_ms"].default
    probe_ms = float(os.environ.get("BANDITLOOP_EVENT_LOOP_PROBE_MS", default))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        probe = asyncio.create_task(watch_event_loop(probe_ms / 1000)) if probe_ms else None
        yield
        if probe is not None:
            probe.cancel()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/choose")
    async def choose() -> JSONResponse:
        return JSONResponse(body)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


app = create_app(json.loads(os.environ.get("BENCH_BARE_BODY", "{}")))
