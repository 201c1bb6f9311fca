"""Signing in and out of the console: a name and an API key with the review (or admin)
scope become a session cookie; the key itself is never stored in the browser."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from service.console.auth import (
    ReviewerDep,
    SignInRequired,
    same_origin,
    set_cookie,
    sign_in,
    sign_out,
    verify_form,
)
from service.console.forms import FormDep
from service.console.render import error_message, page
from service.core.deps import RuntimeDep
from service.core.errors import DomainError, Forbidden, error_response

router = APIRouter(prefix="/console")


def _safe_next(target: str | None) -> str:
    # Only a path inside the console: never an open redirect.
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return "/console/experiments"


@router.get("/sign-in", response_class=HTMLResponse, include_in_schema=False)
def sign_in_page(request: Request) -> Response:
    why = request.query_params.get("why")
    return page(
        request,
        "sign_in.html",
        None,
        error=why,
        next=_safe_next(request.query_params.get("next")),
        name="",
    )


@router.post("/sign-in", response_class=HTMLResponse, include_in_schema=False)
async def sign_in_post(request: Request, runtime: RuntimeDep, form: FormDep) -> Response:
    name = form.get("name", "").strip()
    target = _safe_next(form.get("next"))
    try:
        if not same_origin(request):
            raise Forbidden("cross-site sign-in posts are refused", field="origin")
        if not name or len(name) > 80:
            raise DomainError(
                "your name, 1 to 80 characters, goes into every history", field="name"
            )
        # The key lookup may need the database: off the event loop.
        cookie = await run_in_threadpool(
            sign_in, runtime, name=name, raw_key=form.get("key", "").strip()
        )
    except DomainError as exc:
        return page(
            request,
            "sign_in.html",
            None,
            status_code=exc.status_code,
            error=error_message(exc),
            next=target,
            name=name,
        )
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, request, cookie)
    return response


@router.post("/sign-out", include_in_schema=False)
def sign_out_post(request: Request, reviewer: ReviewerDep, form: FormDep) -> Response:
    verify_form(request, reviewer, form.get("csrf"))
    response = RedirectResponse("/console/sign-in?why=" + quote("You signed out."), 303)
    sign_out(response, request)
    return response


async def sign_in_required(request: Request, exc: Exception) -> Response:
    """A browser asking for a page is sent to sign in (and back); a browser's form post gets
    the sign-in page with a 401; any other client gets the one error shape, 401."""
    assert isinstance(exc, SignInRequired)
    wants_html = "text/html" in request.headers.get("accept", "")
    if not wants_html:
        return error_response(exc.status_code, exc.code, exc.message, exc.details)
    if request.method == "GET" and not request.headers.get("x-console-fragment"):
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        # Being asked to sign in needs no alarm; an expired or revoked session says why.
        why = "" if exc.message == "sign in to use the console" else f"&why={quote(exc.message)}"
        return RedirectResponse(f"/console/sign-in?next={target}{why}", status_code=303)
    return page(request, "sign_in.html", None, status_code=401, error=exc.message, name="")
