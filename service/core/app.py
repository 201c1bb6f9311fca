"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service.admin import endpoints as admin
from service.admin import health_endpoints as health
from service.admin import keys_endpoints as keys
from service.console import mount as console
from service.core import api_docs, openapi
from service.core.deps import refuse_unstorable_params
from service.core.errors import install_error_handlers
from service.core.loop_lag import watch_event_loop
from service.core.middleware import BodySizeLimit, JsonGuard
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.deciding import endpoints as choose
from service.deciding.fast_path import ChooseFastPath
from service.experiments import endpoints as experiments
from service.libraries import endpoints as libraries
from service.loop import endpoints as loop
from service.measuring import endpoints as events
from service.measuring import webhook_endpoints as webhooks
from service.reporting import value_endpoints as value


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """``freeze_heap`` (the served app, ``service.main``): once started, move every object
    alive into the collector's permanent generation. The modules, the ORM's and the
    framework's objects never become garbage, but each full collection walked all of them:
    about 45 ms, landing on whichever request allocated past the threshold (a keyed batch
    of 1,000 went from about 7,600 to 8,800 decisions/s in-process). Not for tests, which
    build many apps in one process: a frozen app's cycles would never be collected."""
    settings = settings or (runtime.settings if runtime else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime(settings)
        app.state.runtime = rt
        rt.start()
        if freeze_heap:
            gc.collect()
            gc.freeze()
        probe_ms = rt.settings.event_loop_probe_ms
        probe = asyncio.create_task(watch_event_loop(probe_ms / 1000)) if probe_ms else None
        try:
            yield
        finally:
            if probe is not None:
                probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probe
            rt.stop()

    app = FastAPI(
        title="banditloop",
        version="1.0.0",
        description="Thompson-sampling experiments for marketing content, with a learning loop.",
        lifespan=lifespan,
        docs_url=None,  # served by api_docs with local assets: no CDN
        redoc_url=None,
        dependencies=[Depends(refuse_unstorable_params)],
        # Metrics are Prometheus (service.core.metrics). FastAPI's native OpenTelemetry checks
        # three global providers on every request (a tenth of /choose's cost) to find them
        # unconfigured: off.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    openapi.install(app)
    api_docs.install(app)
    app.add_middleware(JsonGuard)  # inside BodySizeLimit, which bounds what it reads
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # Outermost: the ordinary /choose request is answered before the framework's stack.
    app.add_middleware(ChooseFastPath)
    # Hot paths first: routes are matched in order.
    for module in (
        choose,
        events,
        webhooks,
        health,
        experiments,
        keys,
        admin,
        loop,
        libraries,
        value,
    ):
        app.include_router(module.router)
    console.install(app)  # the reviewer's console at /console
    return app
