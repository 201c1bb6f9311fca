"""POST /v1/events as a plain ASGI path in front of the framework.

A batch of 1,000 events paid the framework's stack (two body-reading middlewares, routing,
the dependencies, the request object, the response model's validation and encoding) on top
of parsing and storing. This layer answers the ordinary request itself, as
``service.deciding.fast_path`` does for /choose: the exact path, no query string, each
header once, a declared length within the size limit, a JSON media type, a UTF-8 body not
nested too deep (the checks of ``JsonGuard``), an ingest key already in the key cache, and a
body ``parse_events_body`` takes. Anything else (a cache miss, a body the parser refuses)
is replayed, body included, into the full application, whose route and error handlers
answer exactly as they always did; parsing stores nothing, so a replay changes nothing. The
route stays registered there, so the OpenAPI document is unchanged.

Once storing has begun, an error is answered here in the one error shape, as the handlers
would: replaying it would store twice.
"""

from __future__ import annotations

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from service.core.errors import DomainError, database_error, error_body
from service.core.middleware import is_json_media_type, read_body, replaying, send_json
from service.core.runtime import Runtime
from service.core.storable import json_too_deep
from service.measuring.adapters.base import NormalizedEvent, Poison
from service.measuring.api_events import PROVIDER, parse_events_body
from service.measuring.schemas import IngestOut
from service.measuring.service import collector_paused, ingest_payload

PATH = "/v1/events"
encode = orjson.dumps  # as the error handlers' bodies read (and the /choose fast path's)


class EventsFastPath:
    """ASGI layer: serves the ordinary POST /v1/events, passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("path") != PATH
            or scope["method"] != "POST"
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        runtime: Runtime = scope["app"].state.runtime
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if (
            len(headers) != len(scope["headers"])  # a repeated header: the framework's reading
            or length is None
            or not length.isdigit()
            or int(length) > runtime.settings.max_body_bytes
        ):
            await self.app(scope, receive, send)  # BodySizeLimit and the route decide
            return
        body, final = await read_body(receive)
        parsed = None if final is not None else _parse(runtime, headers, body)
        if parsed is None:
            await self.app(scope, replaying(body, final, receive), send)
            return
        content_type = headers[b"content-type"].decode("latin-1")
        try:
            result = await run_in_threadpool(
                ingest_payload,
                runtime,
                source=PROVIDER,
                headers={"content-type": content_type},
                body=body,
                events=parsed[0],
                poison=parsed[1],
            )
        except DomainError as exc:
            error = error_body(exc.code, exc.message, exc.details)
            await send_json(send, exc.status_code, encode(error))
            return
        except SQLAlchemyError as exc:
            status, answer = database_error(exc, f"POST {PATH}")
            await send_json(send, status, encode(answer))
            return
        # Validated and encoded as the route's response model is, so both answer the same bytes.
        out = IngestOut.model_validate(result.body())
        await send_json(send, 200, out.model_dump_json().encode())


def _parse(
    runtime: Runtime, headers: dict[bytes, bytes], body: bytes
) -> tuple[list[NormalizedEvent], list[Poison]] | None:
    """The body's events and rejections, or None when the full application is to answer."""
    content_type = headers.get(b"content-type")
    if content_type is None or not is_json_media_type(content_type.decode("latin-1")):
        return None
    authorization = headers.get(b"authorization")
    if authorization is None:
        return None
    if runtime.api_keys.cached(authorization.decode("latin-1"), "ingest") is None:
        return None  # a miss needs the database (and maybe a 401): the route does that
    if json_too_deep(body):
        return None
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        with collector_paused():
            return parse_events_body(
                body,
                received_at=runtime.clock.now(),
                max_events=runtime.settings.max_events_per_request,
            )
    except DomainError:  # InvalidInput, PayloadTooLarge: the route raises it again, answers
        return None
