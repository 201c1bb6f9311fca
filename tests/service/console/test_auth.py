"""Console sessions through the real app: sign in by name, the cookie, CSRF, expiry, sign out.

A probe router stands in for the console's pages (built on the same dependencies)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient

from service.console import auth
from service.console.auth import AdminReviewerDep, ReviewerDep
from service.core.app import create_app
from service.core.runtime import Runtime
from service.models import utcnow

ORIGIN = {"origin": "http://testserver"}

probe = APIRouter(prefix="/console")


@probe.get("/probe")
def whoami(reviewer: ReviewerDep) -> dict[str, Any]:
    return {"name": reviewer.name, "scope": reviewer.scope, "csrf": reviewer.csrf}


@probe.get("/probe/admin")
def admin_only(reviewer: AdminReviewerDep) -> dict[str, Any]:
    return {"name": reviewer.name}


@probe.post("/probe/act")
async def act(request: Request, reviewer: ReviewerDep) -> dict[str, Any]:
    # Parsed by hand: the probe needs no multipart parser.
    form = parse_qs((await request.body()).decode())
    auth.verify_form(request, reviewer, form.get("csrf", [None])[0])
    return {"acted_by": reviewer.name}


@probe.post("/probe/sign-in")
async def sign_in(request: Request) -> Response:
    data = await request.json()
    cookie = auth.sign_in(request.app.state.runtime, name=data["name"], raw_key=data["key"])
    response = JSONResponse({"ok": True})
    auth.set_cookie(response, request, cookie)
    return response


@probe.post("/probe/sign-out")
def sign_out(request: Request, reviewer: ReviewerDep) -> Response:
    auth.verify_form(request, reviewer, request.headers.get("x-csrf-token"))
    response = JSONResponse({"ok": True})
    auth.sign_out(response, request)
    return response


@pytest.fixture
def console(runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(runtime=runtime)
    app.include_router(probe)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _key(runtime: Runtime, scopes: str, name: str = "console key") -> str:
    return runtime.api_keys.create(name=name, scopes=scopes)[1]


def _signed_in(console: TestClient, runtime: Runtime, name: str = "Ada", scopes: str = "review"):
    response = console.post(
        "/console/probe/sign-in", json={"name": name, "key": _key(runtime, scopes)}
    )
    assert response.status_code == 200, response.text
    return response


def test_sign_in_sets_an_http_only_lax_cookie_and_names_the_person(console, runtime):
    response = _signed_in(console, runtime, name="  Ada   Lovelace ")
    header = response.headers["set-cookie"]
    assert header.startswith(f"{auth.COOKIE}=")
    assert "HttpOnly" in header
    assert "SameSite=lax" in header
    assert "Path=/console" in header
    assert "Secure" not in header  # plain HTTP here
    assert "Max-Age=28800" in header  # 8 hours by default
    me = console.get("/console/probe").json()
    assert me["name"] == "Ada Lovelace"
    assert me["scope"] == "review"
    # The database holds the token's digest, never the token.
    token = console.cookies[auth.COOKIE]
    with runtime.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT token_digest, person FROM console_session").all()
    assert stored == [(auth._digest(token), "Ada Lovelace")]
    assert token not in str(stored)


def test_the_cookie_is_secure_behind_https(console, runtime):
    key = _key(runtime, "review")
    response = console.post(
        "/console/probe/sign-in",
        json={"name": "Ada", "key": key},
        headers={"x-forwarded-proto": "https"},
    )
    assert "Secure" in response.headers["set-cookie"]
    direct = TestClient(console.app, base_url="https://testserver")
    response = direct.post("/console/probe/sign-in", json={"name": "Ada", "key": key})
    assert "Secure" in response.headers["set-cookie"]


def test_admin_key_signs_in_as_admin_and_review_is_refused_admin_pages(console, runtime):
    _signed_in(console, runtime, scopes="admin")
    assert console.get("/console/probe").json()["scope"] == "admin"
    assert console.get("/console/probe/admin").status_code == 200
    console.cookies.clear()
    _signed_in(console, runtime, scopes="review")
    refused = console.get("/console/probe/admin")
    assert refused.status_code == 403
    assert refused.json()["error"]["details"] == {"field": "scope"}


@pytest.mark.parametrize("scopes", ["decide", "ingest", "decide,ingest"])
def test_keys_without_review_cannot_sign_in(runtime, scopes):
    with pytest.raises(auth.Forbidden):
        auth.sign_in(runtime, name="Ada", raw_key=_key(runtime, scopes))


@pytest.mark.parametrize(
    ("name", "key", "error"),
    [
        ("", None, auth.InvalidInput),
        ("x" * 81, None, auth.InvalidInput),
        ("bad\x00name", None, auth.InvalidInput),
        ("Ada", "bl_not-a-key", auth.Unauthorized),
        ("Ada", "   ", auth.InvalidInput),
    ],
)
def test_sign_in_refusals(runtime, name, key, error):
    with pytest.raises(error) as refused:
        auth.sign_in(runtime, name=name, raw_key=key or _key(runtime, "review"))
    assert refused.value.details == {"field": "key" if key else "name"}


def test_no_session_is_refused(console):
    response = console.get("/console/probe")
    assert response.status_code == 401
    assert response.json()["error"]["details"] == {"field": "session"}
    console.cookies.set(auth.COOKIE, "forged-token", path="/console")
    assert console.get("/console/probe").status_code == 401


def test_an_expired_session_is_refused(console, runtime):
    hours = runtime.settings.console_session_hours
    token = auth.sign_in(
        runtime,
        name="Ada",
        raw_key=_key(runtime, "review"),
        now=utcnow() - timedelta(hours=hours, seconds=1),
    )
    console.cookies.set(auth.COOKIE, token, path="/console")
    response = console.get("/console/probe")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]
    # One second younger, the same kind of session is still good.
    fresh = auth.sign_in(
        runtime,
        name="Ada",
        raw_key=_key(runtime, "review"),
        now=utcnow() - timedelta(hours=hours) + timedelta(seconds=30),
    )
    assert auth.lookup(runtime, fresh).name == "Ada"


def test_revoking_the_key_ends_the_session(console, runtime):
    row, raw = runtime.api_keys.create(name="k", scopes="review")
    token = auth.sign_in(runtime, name="Ada", raw_key=raw)
    assert auth.lookup(runtime, token).key_id == row.id
    assert row.id is not None
    runtime.api_keys.revoke(row.id)
    with pytest.raises(auth.SignInRequired, match="revoked"):
        auth.lookup(runtime, token)


def test_sign_out_ends_the_session_for_good(console, runtime):
    _signed_in(console, runtime)
    token = console.cookies[auth.COOKIE]
    csrf = console.get("/console/probe").json()["csrf"]
    response = console.post("/console/probe/sign-out", headers={**ORIGIN, "x-csrf-token": csrf})
    assert response.status_code == 200
    assert f'{auth.COOKIE}="";' in response.headers["set-cookie"]
    # Replaying the old cookie does not bring the session back.
    console.cookies.set(auth.COOKIE, token, path="/console")
    response = console.get("/console/probe")
    assert response.status_code == 401
    assert "signed out" in response.json()["error"]["message"]


def test_a_form_post_needs_the_session_csrf_token_and_same_origin(console, runtime):
    _signed_in(console, runtime)
    csrf = console.get("/console/probe").json()["csrf"]
    ok = console.post("/console/probe/act", data={"csrf": csrf}, headers=ORIGIN)
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"acted_by": "Ada"}
    refusals = [
        ({}, ORIGIN, "csrf"),  # no token
        ({"csrf": csrf[:-1] + "x"}, ORIGIN, "csrf"),  # wrong token
        ({"csrf": csrf}, {}, "origin"),  # no Origin nor Referer
        ({"csrf": csrf}, {"origin": "https://evil.example"}, "origin"),
        ({"csrf": csrf}, {**ORIGIN, "sec-fetch-site": "cross-site"}, "origin"),
    ]
    for data, headers, field in refusals:
        response = console.post("/console/probe/act", data=data, headers=headers)
        assert response.status_code == 403, (data, headers)
        assert response.json()["error"]["details"] == {"field": field}
    # Another person's session has another token.
    other = TestClient(console.app)
    _signed_in(other, runtime, name="Grace")
    response = other.post("/console/probe/act", data={"csrf": csrf}, headers=ORIGIN)
    assert response.status_code == 403


def test_sessions_over_for_a_day_are_forgotten_at_the_next_sign_in(runtime):
    key = _key(runtime, "review")
    old = auth.sign_in(runtime, name="Ada", raw_key=key, now=utcnow() - timedelta(days=3))
    recent = auth.sign_in(runtime, name="Ada", raw_key=key, now=utcnow() - timedelta(hours=9))
    auth.sign_in(runtime, name="Grace", raw_key=key)
    with runtime.engine.connect() as conn:
        digests = {
            row[0] for row in conn.exec_driver_sql("SELECT token_digest FROM console_session")
        }
    assert auth._digest(old) not in digests  # expired two days ago
    assert auth._digest(recent) in digests  # expired an hour ago: kept a day, still refused
    with pytest.raises(auth.SignInRequired, match="expired"):
        auth.lookup(runtime, recent)
