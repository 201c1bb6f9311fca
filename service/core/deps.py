"""Annotated dependencies, so routes never call Depends() themselves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from service.core.auth import Principal
from service.core.errors import InvalidInput
from service.core.runtime import Runtime
from service.core.storable import safe_text, unstorable_reason

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


async def refuse_unstorable_params(request: Request) -> None:
    """Every route's path and query parameters, checked once (installed app-wide): text
    the databases cannot store is the caller's mistake, named, never a 500 later."""
    params = [*request.path_params.items(), *request.query_params.multi_items()]
    for name, value in params:
        for text, what in ((name, "parameter name"), (str(value), "")):
            reason = unstorable_reason(text)
            if reason is not None:
                field = safe_text(name)
                raise InvalidInput(f"{field}: {what + ' ' if what else ''}{reason}", field=field)


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    with runtime.unit_of_work() as session:
        yield session


# scope="function": the session commits (and its after-commit hooks run) before the
# response is sent, so a 2xx always means the change is durable and visible.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def authorize(request: Request, scope: str) -> Principal:
    """The caller's principal: from the key cache on the event loop, else (a miss needs
    the database) from a worker thread."""
    runtime: Runtime = request.app.state.runtime
    authorization = request.headers.get("authorization")
    principal = runtime.api_keys.cached(authorization, scope)
    if principal is None:
        principal = await run_in_threadpool(runtime.api_keys.require, authorization, scope)
    return principal


def _scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        return await authorize(request, scope)

    return dependency


DecideKey = Annotated[Principal, Depends(_scope("decide"))]
IngestKey = Annotated[Principal, Depends(_scope("ingest"))]
# review: read results, review proposals, manage arms and briefs, run the loop; admin
# (which allows every scope) keeps keys, purge, replay, unit deletion and measurement.
ReviewKey = Annotated[Principal, Depends(_scope("review"))]
AdminKey = Annotated[Principal, Depends(_scope("admin"))]
