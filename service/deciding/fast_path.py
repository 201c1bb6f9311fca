"""POST /v1/choose and /v1/choose/batch as a plain ASGI path in front of the framework.

A send job calls /choose once per recipient, and the framework's work per request (the
middleware stack, routing, the request and response objects) cost more than deciding. This
layer answers the ordinary request itself: the exact path, no query string, a JSON body
within the size limit that the body checks would pass, a key already in the key cache, a
body the schema accepts. Anything else (a cache miss, a body the schema refuses, text the
databases cannot store, an oversize batch) is replayed, body included, into the full
application, whose routes, checks and error handlers answer exactly as they always did. The
routes stay registered there, so the OpenAPI document is unchanged.

An error raised while deciding (an unknown experiment, the database away during a keyed
read-back) is answered here in the one error shape, as the application's handlers would:
replaying it would decide twice.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

from service.core import metrics
from service.core.errors import DomainError, database_error, error_body
from service.core.faults import RETRY_AFTER_SECONDS
from service.core.middleware import is_json_media_type, read_body, replaying
from service.core.runtime import Runtime
from service.core.storable import json_too_deep
from service.deciding.endpoints import batch_answer, choice_body, decide, encode, unit_of
from service.deciding.schemas import BatchIn, ChooseIn

ROUTES: dict[str, tuple[type[BaseModel], str]] = {
    "/v1/choose": (ChooseIn, "choose"),
    "/v1/choose/batch": (BatchIn, "batch"),
}
_JSON_HEADERS = [(b"content-type", b"application/json")]
# The latency histogram's child per route, looked up once (``labels()`` takes a lock).
_LATENCY = {label: metrics.CHOOSE_LATENCY.labels(label) for _, label in ROUTES.values()}


class _Replay(Exception):
    """Not an ordinary request: let the full application answer it."""


class ChooseFastPath:
    """Outermost ASGI layer: serves the two POST choose routes, passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        route = ROUTES.get(path) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST" or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        runtime: Runtime = scope["app"].state.runtime
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is None or not length.isdigit() or int(length) > runtime.settings.max_body_bytes:
            await self.app(scope, receive, send)  # BodySizeLimit and the route decide
            return
        body, final = await read_body(receive)
        try:
            if final is not None:
                raise _Replay  # the client went away mid-body: the application sees that
            status, answer = await _answer(runtime, path, route, headers, body)
        except _Replay:
            await self.app(scope, replaying(body, final, receive), send)
            return
        await _send_json(send, status, answer)


async def _answer(
    runtime: Runtime,
    path: str,
    route: tuple[type[BaseModel], str],
    headers: dict[bytes, bytes],
    body: bytes,
) -> tuple[int, bytes]:
    """The status and the JSON body, encoded as the routes encode, so both paths answer
    the same bytes."""
    model, label = route
    started = time.perf_counter()
    content_type = headers.get(b"content-type")
    if content_type is None or not is_json_media_type(content_type.decode("latin-1")):
        raise _Replay
    authorization = headers.get(b"authorization")
    if authorization is None:
        raise _Replay
    if runtime.api_keys.cached(authorization.decode("latin-1"), "decide") is None:
        raise _Replay  # a miss needs the database (and maybe a 401): the route does that
    # The body checks of JsonGuard: NUL and lone surrogates only reach JSON as \u escapes.
    if b"\\u" in body or json_too_deep(body):
        raise _Replay
    try:
        text = body.decode("utf-8")
        parsed: Any = model.model_validate_json(text)
    except (UnicodeDecodeError, ValidationError) as exc:
        raise _Replay from exc
    try:
        if isinstance(parsed, BatchIn):
            if len(parsed.units) > runtime.settings.max_batch_units:
                raise _Replay
            started = time.perf_counter()
            units = [unit_of(u) for u in parsed.units]
            choices = await decide(runtime, parsed.experiment, units)
            answer = batch_answer(choices)
        else:
            choice = (await decide(runtime, parsed.experiment, [unit_of(parsed)]))[0]
            answer = encode(choice_body(choice))
    except DomainError as exc:
        return exc.status_code, encode(error_body(exc.code, exc.message, exc.details))
    except SQLAlchemyError as exc:  # a keyed decision's store or read-back
        status, error = database_error(exc, f"POST {path}")
        return status, encode(error)
    _LATENCY[label].observe(time.perf_counter() - started)
    return 200, answer


async def _send_json(send: Send, status: int, payload: bytes) -> None:
    headers = [(b"content-length", str(len(payload)).encode()), *_JSON_HEADERS]
    if status == 503:
        headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
