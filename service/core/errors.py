"""Domain errors and the one error shape every response uses.

Domain code raises these (never HTTPException); the handlers installed by
``install_error_handlers`` turn them, FastAPI's validation errors and anything
unexpected into ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core.faults import RETRY_AFTER_SECONDS, describe, is_transient

log = logging.getLogger("banditloop.errors")


class DomainError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if field is not None and details is None:
            self.details = {"field": field}


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class InvalidInput(DomainError):
    status_code = 422
    code = "invalid"


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class PayloadTooLarge(DomainError):
    status_code = 413
    code = "payload_too_large"


class Unavailable(DomainError):
    status_code = 503
    code = "unavailable"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def database_error(exc: SQLAlchemyError, where: str) -> tuple[int, dict[str, Any]]:
    """Status and body for a database error, logged with ``where`` (method and path).

    A lock timeout, a lost connection or a serialization failure is our transient fault:
    503 (sent with Retry-After), which every caller and ESP retries. Other database errors
    are bugs of ours and stay 500."""
    if is_transient(exc):
        log.warning("database unavailable on %s: %s", where, describe(exc))
        return 503, error_body(
            "unavailable", "the database is busy or unreachable; retry later", None
        )
    log.exception("database error on %s", where)
    return 500, error_body("internal", "internal error; see the service log")


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def describe_validation_errors(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    details = []
    for err in errors:
        loc = err.get("loc", ())
        details.append({"field": _field_name(loc), "message": err.get("msg", "invalid")})
    if not details:
        return "invalid request", details
    first = details[0]
    if errors and errors[0].get("type") == "json_invalid":
        return "request body is not valid JSON", details
    return f"{first['field']}: {first['message']}", details


def _allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document lists for the requested path (routes are nested
    routers in FastAPI, the document is the flat view of them)."""
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in item}
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status_code == 503 else None
        return error_response(exc.status_code, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        status, body = database_error(exc, f"{request.method} {request.url.path}")
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = describe_validation_errors(list(exc.errors()))
        return error_response(422, "invalid", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's only 400: a body its JSON parser raised on (an integer of more than
            # 4,300 digits, say). The caller's mistake, in our words, naming the body.
            return error_response(
                422, "invalid", "request body could not be parsed as JSON", {"field": "body"}
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; a path served by
            # several routes (GET and POST /v1/experiments) allows all of their methods.
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(_request))}
        return error_response(exc.status_code, code, str(exc.detail), None, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error; see the service log")
