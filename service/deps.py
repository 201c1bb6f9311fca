"""Annotated dependencies, so routes never call Depends() themselves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from service.auth import Principal
from service.runtime import Runtime
from service.sessions import request_session

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    yield from request_session(runtime.engine, {"install_snapshot": runtime.refresher.install})


# scope="function": the session commits (and its after-commit hooks run) before the
# response is sent, so a 2xx always means the change is durable and visible.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def _scope(scope: str) -> Callable[..., Principal]:
    def dependency(
        request: Request,
        runtime: RuntimeDep,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        return runtime.api_keys.require(request.headers.get("authorization"), scope)

    return dependency


DecideKey = Annotated[Principal, Depends(_scope("decide"))]
IngestKey = Annotated[Principal, Depends(_scope("ingest"))]
AdminKey = Annotated[Principal, Depends(_scope("admin"))]
