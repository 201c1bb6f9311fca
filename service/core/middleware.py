"""ASGI middleware: refuse oversize bodies before anything reads them, and refuse JSON
bodies that no route could take (wrong media type, nested too deep, text the databases
cannot store) in one place, before any route or parser sees them."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import error_body
from service.core.storable import MAX_JSON_DEPTH, find_unstorable, json_too_deep

# Webhook routes take what each provider really sends (SNS posts text/plain, see
# docs/webhooks.md); their adapters parse the raw bytes and dead-letter what they cannot
# store, so one bad event in a signed batch never costs the provider a retry.
RAW_BODY_PREFIXES = ("/v1/webhooks/",)
# /v1/events answers per event (one bad event never sinks the rest), so its parser checks
# the text of each event itself.
PER_EVENT_PATHS = ("/v1/events",)
# The console's HTML forms post form-encoded bodies (bounded by BodySizeLimit); its routes
# parse them into the same schemas the API validates.
FORM_PREFIXES = ("/console/",)
FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen = 0
        responded = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not responded:
                await _too_large(send, self.max_bytes)


class _TooLarge(Exception):
    pass


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Any, limit: int) -> None:
    await send_error(send, 413, "payload_too_large", f"request body exceeds {limit} bytes", "body")


class JsonGuard:
    """Read the whole body once (BodySizeLimit, outside, bounds it), check it, replay it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        body, final = await read_body(receive)
        refusal = _refusal(scope, body) if body else None
        if refusal is not None:
            await send_error(send, *refusal)
            return
        await self.app(scope, replaying(body, final, receive), send)


def replaying(body: bytes, final: Message | None, receive: Receive) -> Receive:
    """A receive that hands on the body already read, then what the client sends next."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return final if final is not None else await receive()

    return replay


async def read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body, and the message that ended it early (the client went away), if any."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message  # the client went away: pass that on
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _refusal(scope: Scope, body: bytes) -> tuple[int, str, str, str] | None:
    path: str = scope.get("path", "")
    raw = path.startswith(RAW_BODY_PREFIXES)
    if path.startswith(FORM_PREFIXES):
        form_type = (_header(scope, b"content-type") or "").partition(";")[0].strip().lower()
        if form_type in FORM_MEDIA_TYPES:
            return None
    if not raw:
        media_type = _header(scope, b"content-type")
        if not is_json_media_type(media_type):
            return (
                415,
                "unsupported_media_type",
                f"send the body as application/json, not {media_type or 'no content type'!r}",
                "content-type",
            )
    if json_too_deep(body):
        return 422, "invalid", f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "body"
    if raw:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return 422, "invalid", "request body is not valid UTF-8", "body"
    # NUL and lone surrogates can only reach a JSON string as \u escapes: most bodies
    # have none, and skip the parse.
    if path in PER_EVENT_PATHS or "\\u" not in text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None  # the route reports invalid JSON in its own words
    found = find_unstorable(data)
    if found is None:
        return None
    field, reason = found
    return 422, "invalid", f"{field}: {reason}", field


def is_json_media_type(value: str | None) -> bool:
    """application/json or any +json type, in UTF-8 (the only charset JSON has)."""
    if not value:
        return False
    media_type, _, params = value.partition(";")
    media_type = media_type.strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return False
    for param in params.split(";"):
        name, _, charset = param.partition("=")
        if name.strip().lower() == "charset" and charset.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def send_error(send: Any, status: int, code: str, message: str, field: str) -> None:
    body = json.dumps(error_body(code, message, {"field": field})).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
