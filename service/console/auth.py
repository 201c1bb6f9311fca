"""Console sign-in: a person's name and a review (or admin) API key become a session.

The browser holds only a random token in an HTTP-only, SameSite=Lax cookie (``Secure``
when the request came over HTTPS, directly or through a proxy's X-Forwarded-Proto); the
database holds its SHA-256 digest, the person, the key and the expiry. Every request
re-reads the key, so revoking it (or signing out) ends the session on every replica.
The CSRF token is an HMAC of the session token: bound to the session, never stored.

How the console's routes use it::

    from service.console.auth import ReviewerDep, verify_form

    @router.get("/console/experiments")
    def page(reviewer: ReviewerDep) -> Response:      # the signed-in person, or
        ...                                           # SignInRequired (a 401)

    @router.post("/console/proposals/{id}/approve")
    def approve(request: Request, reviewer: ReviewerDep, form: FormDep) -> Response:
        verify_form(request, reviewer, form.get("csrf"))  # same origin + CSRF, or 403
        loop_review.approve(..., actor=reviewer.name)     # the person goes in the history

    # sign-in / sign-out routes (sync routes: both touch the database)
    cookie = sign_in(runtime, name=name, raw_key=key)  # Unauthorized / Forbidden / 422
    set_cookie(response, request, cookie)
    sign_out(response, request)                        # ends the row, clears the cookie

``AdminReviewerDep`` is the same for console routes only an admin key may use (403 for a
review session). Forms render ``reviewer.csrf`` in a hidden ``csrf`` field; fetch/htmx
requests may send it as the ``X-CSRF-Token`` header instead (``verify_form`` reads it when
the form has none).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import Response

from service.console import repository as sessions_repo
from service.core.errors import Forbidden, InvalidInput, Unauthorized
from service.core.runtime import Runtime
from service.core.storable import unstorable_reason
from service.models import as_utc

COOKIE = "banditloop_console"
COOKIE_PATH = "/console"
CONSOLE_SCOPES = ("admin", "review")  # the strongest first: a key with both signs in as admin
MAX_NAME_LENGTH = 80


class SignInRequired(Unauthorized):
    """No valid session: pages answer with the sign-in page, form posts and fragments 401."""


@dataclass(frozen=True, slots=True)
class Reviewer:
    """The signed-in person. ``name`` is what every history records."""

    name: str
    scope: str  # "review" or "admin"
    key_id: int
    session_id: int
    csrf: str
    expires_at: float  # POSIX seconds

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    def allows(self, scope: str) -> bool:
        """Same rule as an API key: admin allows everything, review allows review."""
        return self.scope == "admin" or self.scope == scope


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_for(token: str) -> str:
    # Keyed by the session token, which a cross-site page can neither read nor guess.
    return hmac.new(token.encode(), b"banditloop console csrf", hashlib.sha256).hexdigest()[:43]


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"your name, 1 to {MAX_NAME_LENGTH} characters, goes into every history",
            field="name",
        )
    reason = unstorable_reason(cleaned)
    if reason is not None:
        raise InvalidInput(f"name: {reason}", field="name")
    return cleaned


def sign_in(runtime: Runtime, *, name: str, raw_key: str, now: datetime | None = None) -> str:
    """Open a session for ``name`` with ``raw_key`` (review or admin scope); the cookie value.

    Raises InvalidInput (bad name), Unauthorized (unknown or revoked key) or Forbidden (a
    decide or ingest key). Blocking: call it from a sync route or a worker thread.
    """
    person = _clean_name(name)
    if not raw_key.strip():
        raise InvalidInput("paste the review key you were given", field="key")
    try:
        principal = runtime.api_keys.authenticate(f"Bearer {raw_key.strip()}")
    except Unauthorized:
        # In the form's words: there is no Authorization header to speak of here.
        raise Unauthorized("unknown or revoked key", field="key") from None
    if not any(scope in principal.scopes for scope in CONSOLE_SCOPES):
        raise Forbidden("this key has neither the review nor the admin scope", field="key")
    issued = as_utc(now) if now is not None else runtime.clock.now()
    token = secrets.token_urlsafe(32)
    expires = issued + timedelta(hours=runtime.settings.console_session_hours)
    with runtime.unit_of_work() as session:
        # Housekeeping on the way in: sessions over for a day are of no use to anyone.
        sessions_repo.forget_before(session, before=issued - timedelta(days=1))
        sessions_repo.create(
            session,
            token_digest=_digest(token),
            person=person,
            key_id=principal.key_id,
            expires_at=expires,
        )
    return token


def lookup(runtime: Runtime, token: str, *, now: datetime | None = None) -> Reviewer:
    """The person behind a cookie value, or SignInRequired saying why not."""
    at = as_utc(now) if now is not None else runtime.clock.now()
    with runtime.unit_of_work() as session:
        found = sessions_repo.find_with_key(session, token_digest=_digest(token))
    if found is None:
        raise SignInRequired("sign in to use the console", field="session")
    row, key = found
    if row.ended_at is not None:
        raise SignInRequired("you signed out: sign in again", field="session")
    if key.revoked_at is not None:
        raise SignInRequired("the key you signed in with was revoked", field="session")
    expires = as_utc(row.expires_at)
    if expires <= at:
        raise SignInRequired("your session has expired: sign in again", field="session")
    scopes = key.scopes.split(",")
    scope = next((s for s in CONSOLE_SCOPES if s in scopes), None)
    if scope is None or row.id is None:
        raise SignInRequired("the key you signed in with no longer has the review scope")
    return Reviewer(
        name=row.person,
        scope=scope,
        key_id=key.id or 0,
        session_id=row.id,
        csrf=csrf_for(token),
        expires_at=expires.timestamp(),
    )


def _https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(response: Response, request: Request, value: str) -> None:
    runtime: Runtime = request.app.state.runtime
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(runtime.settings.console_session_hours * 3600),
        httponly=True,
        # Lax, not Strict: a link from a notification opens the console signed in, while a
        # cross-site POST still arrives without the cookie (and without the CSRF token).
        samesite="lax",
        secure=_https(request),
        path=COOKIE_PATH,
    )


def sign_out(response: Response, request: Request) -> None:
    """End the request's session in the database and clear the cookie. Blocking."""
    runtime: Runtime = request.app.state.runtime
    token = request.cookies.get(COOKIE)
    if token:
        with runtime.unit_of_work() as session:
            sessions_repo.end(session, token_digest=_digest(token), at=runtime.clock.now())
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, secure=_https(request), httponly=True, samesite="lax"
    )


def current_reviewer(request: Request) -> Reviewer:
    """FastAPI dependency (sync: FastAPI runs it in a worker thread, it reads the database)."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInRequired("sign in to use the console", field="session")
    return lookup(request.app.state.runtime, token)


ReviewerDep = Annotated[Reviewer, Depends(current_reviewer)]


def current_admin(reviewer: ReviewerDep) -> Reviewer:
    if not reviewer.is_admin:
        raise Forbidden("this needs an admin key; you signed in with a review key", field="scope")
    return reviewer


AdminReviewerDep = Annotated[Reviewer, Depends(current_admin)]


def same_origin(request: Request) -> bool:
    """A form post must come from a console page: its Origin (or Referer) is this host, and
    the browser, when it says so, calls it same-origin."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return False
    return urlsplit(origin).netloc == request.headers.get("host", "")


def verify_form(request: Request, reviewer: Reviewer, token: str | None) -> None:
    """Refuse (403) a state-changing request that is cross-site or lacks the CSRF token."""
    if not same_origin(request):
        raise Forbidden("cross-site form posts are refused", field="origin")
    token = token or request.headers.get("x-csrf-token")
    if not token or not hmac.compare_digest(token, reviewer.csrf):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page", field="csrf")
