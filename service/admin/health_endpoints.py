"""Public endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from service.core import metrics
from service.core.deps import RuntimeDep
from service.core.migrations import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """The database is reachable and its schema is at the newest migration."""

    def check() -> tuple[bool, dict[str, str | None]]:
        try:
            with runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            current = current_revision(runtime.engine)
        except Exception as exc:  # report, never raise: this is a probe
            return False, {"database": f"unreachable: {type(exc).__name__}"}
        head = head_revision(runtime.settings.database_url)
        state = {"database": "ok", "migration": current, "head": head}
        return current == head, state

    ready, state = await run_in_threadpool(check)
    return JSONResponse(
        {"status": "ready" if ready else "not ready", **state}, status_code=200 if ready else 503
    )


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(runtime: RuntimeDep) -> Response:
    # The state gauges read the database (cached a few seconds): off the event loop.
    body, content_type = await run_in_threadpool(metrics.render, runtime.state_metrics)
    return Response(body, media_type=content_type)
