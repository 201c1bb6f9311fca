"""Console sign-in, until the session store of issue 13a lands: a person's name and the
scope of the key they signed in with, in an HMAC-signed, HTTP-only, SameSite cookie that
expires; a CSRF token bound to the session; a same-origin check on every form post.

    reviewer: ReviewerDep          # in a page route: the signed-in person, or sign-in
    await verify_form(request, reviewer)  # in a form route: CSRF token and origin

The pages depend only on `ReviewerDep`, `Reviewer`, `verify_form`, `sign_in` and
`sign_out`, so swapping the store underneath changes nothing above it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import Response

from service.errors import Forbidden, Unauthorized
from service.runtime import Runtime, signing_keys_for

COOKIE = "banditloop_console"
SESSION_SECONDS = 8 * 3600
CONSOLE_SCOPES = ("review", "admin")


class SignInRequired(Unauthorized):
    """No valid session: pages answer with the sign-in page, forms with 401."""


@dataclass(frozen=True, slots=True)
class Reviewer:
    name: str
    scope: str  # "review" or "admin"
    key_id: int
    csrf: str
    expires_at: float

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"


def _secret(runtime: Runtime) -> bytes:
    # Derived from the decision-id signing key, so every replica agrees without a new
    # setting; the label keeps the two uses apart.
    _kid, key = signing_keys_for(runtime.settings)[0]
    return hmac.new(key.encode(), b"banditloop console session", hashlib.sha256).digest()


def _encode(runtime: Runtime, data: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()
    mac = hmac.new(_secret(runtime), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def _decode(runtime: Runtime, value: str) -> dict[str, object] | None:
    body, _, mac = value.rpartition(".")
    expected = hmac.new(_secret(runtime), body.encode(), hashlib.sha256).hexdigest()
    if not body or not hmac.compare_digest(mac, expected):
        return None
    try:
        data: dict[str, object] = json.loads(base64.urlsafe_b64decode(body.encode()))
    except ValueError:
        return None
    return data


def sign_in(runtime: Runtime, *, name: str, raw_key: str, now: float | None = None) -> str:
    """The cookie value for `name`, signing in with `raw_key` (a review or admin key)."""
    principal = runtime.api_keys.authenticate(f"Bearer {raw_key}")
    scope = next((s for s in ("admin", "review") if s in principal.scopes), None)
    if scope is None:
        raise Forbidden("this key has neither the review nor the admin scope", field="key")
    issued = time.time() if now is None else now
    return _encode(
        runtime,
        {
            "name": name,
            "scope": scope,
            "key_id": principal.key_id,
            "csrf": secrets.token_urlsafe(24),
            "exp": issued + SESSION_SECONDS,
        },
    )


def set_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=_https(request),
        path="/console",
    )


def sign_out(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/console", secure=_https(request), httponly=True)


def _https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def current_reviewer(request: Request) -> Reviewer:
    runtime: Runtime = request.app.state.runtime
    value = request.cookies.get(COOKIE)
    data = _decode(runtime, value) if value else None
    if data is None:
        raise SignInRequired("sign in to use the console", field="session")
    expires = float(data["exp"])  # type: ignore[arg-type]
    if expires <= time.time():
        raise SignInRequired("your session has expired: sign in again", field="session")
    return Reviewer(
        name=str(data["name"]),
        scope=str(data["scope"]),
        key_id=int(data["key_id"]),  # type: ignore[arg-type]
        csrf=str(data["csrf"]),
        expires_at=expires,
    )


ReviewerDep = Annotated[Reviewer, Depends(current_reviewer)]


def same_origin(request: Request) -> bool:
    """A form post must come from a console page: its Origin (or Referer) is this host."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return False
    return urlsplit(origin).netloc == request.headers.get("host", "")


def verify_form(request: Request, reviewer: Reviewer, token: str | None) -> None:
    if not same_origin(request):
        raise Forbidden("cross-site form posts are refused", field="origin")
    if not token or not hmac.compare_digest(token, reviewer.csrf):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page", field="csrf")
