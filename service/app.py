"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service import api_docs, openapi
from service.console import mount as console
from service.deps import refuse_unstorable_params
from service.errors import install_error_handlers
from service.middleware import BodySizeLimit, JsonGuard
from service.routes import (
    admin,
    choose,
    events,
    experiments,
    health,
    keys,
    libraries,
    loop,
    value,
    webhooks,
)
from service.routes.choose_fast import ChooseFastPath
from service.runtime import Runtime
from service.settings import Settings


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or (runtime.settings if runtime else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime(settings)
        app.state.runtime = rt
        rt.start()
        try:
            yield
        finally:
            rt.stop()

    app = FastAPI(
        title="banditloop",
        version="1.0.0",
        description="Thompson-sampling experiments for marketing content, with a learning loop.",
        lifespan=lifespan,
        docs_url=None,  # served by api_docs with local assets: no CDN
        redoc_url=None,
        dependencies=[Depends(refuse_unstorable_params)],
        # Metrics are Prometheus (service.metrics). FastAPI's native OpenTelemetry checks
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
