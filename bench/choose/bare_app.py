"""The baseline for bench/choose: a bare FastAPI `POST /v1/choose` returning a constant body.

The body is the JSON the real service answered with, passed in BENCH_BARE_BODY, so both
servers render and send the same number of bytes. Run: uvicorn --app-dir bench/choose bare_app:app
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI
from fastapi.responses import JSONResponse


def create_app(body: dict[str, object]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/choose")
    async def choose() -> JSONResponse:
        return JSONResponse(body)

    return app


app = create_app(json.loads(os.environ.get("BENCH_BARE_BODY", "{}")))
