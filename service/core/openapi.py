"""Complete the generated OpenAPI document: the models routes parse by hand, and the error
responses each operation can really give, in the one error shape (so that integrators and
the fuzzer in tests/service/fuzz.py can rely on them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from service.deciding.schemas import BatchIn, ChooseIn
from service.measuring.schemas import EventIn

# Bodies read as raw bytes (to store them exactly) are documented through these models.
EXTRA_MODELS: tuple[type[BaseModel], ...] = (EventIn, ChooseIn, BatchIn)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {
                    "description": "Names the field at fault: {field} or [{field, message}]"
                },
            },
        }
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
DESCRIPTIONS = {
    400: "The provider's body could not be parsed (stored, dead-lettered; see docs/webhooks.md).",
    401: "Missing, unknown or revoked API key (or, on webhooks, a bad provider signature).",
    403: "The API key lacks the scope (on the Postmark webhook: its malformed-body status, "
    "which Postmark never retries).",
    404: "No such experiment, arm, proposal, key or provider.",
    406: "Mailgun: its malformed-body status, which it never retries.",
    409: "The change conflicts with the current state (status, duplicate key, limits).",
    413: "The body, or the number of units or events in it, exceeds the limit.",
    415: "The body is not application/json (with charset utf-8, or a +json type).",
    422: "Invalid input; `details` names the field (also NUL or lone surrogates in any text, "
    "JSON nested too deep, out-of-range ids, far dates).",
    503: "A transient fault on our side (the database is unavailable); retry.",
}
BODY_METHODS = {"post", "put", "patch", "delete"}
# Operations that can answer these beyond what the general rules below give them.
NOT_FOUND_PATHS = {"/v1/choose", "/v1/choose/batch", "/v1/proposals"}
WEBHOOK_STATUSES = {400, 401, 403, 404, 406, 413, 422, 503}


def error_statuses(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    """What an operation can answer besides success, from how the service is built: the
    JSON guard (413, 415, 422) sees every body, the parameter guard (422) every path and
    query, the key check (401, 403) every keyed route, lookups by id or key give 404, and
    state changes of experiments, arms and proposals give 409, and a transient database
    fault gives 503 wherever the database is read."""
    if path.startswith("/v1/webhooks/"):
        return set(WEBHOOK_STATUSES)
    statuses = {422}
    if operation.get("security"):
        statuses |= {401, 403}
    if "{" in path or path in NOT_FOUND_PATHS:
        statuses.add(404)
    if method in BODY_METHODS:
        statuses |= {413, 415}
    if method == "post" and path.startswith(("/v1/experiments", "/v1/proposals/")):
        statuses.add(409)
    if operation.get("security"):
        # One handler turns a transient database fault into 503 on every keyed route.
        statuses.add(503)
    return statuses


def document_errors(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(error_statuses(method, path, operation)):
                existing = responses.get(str(status), {})
                responses[str(status)] = {
                    "description": existing.get("description") or DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": ERROR_REF}},
                }
    _document_storable_text(schema)
    # FastAPI's own 422 model is replaced everywhere by the shape we really answer.
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


def install(app: FastAPI) -> None:
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in EXTRA_MODELS:
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in model_schema.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components[model.__name__] = model_schema
        document_errors(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# What service/core/storable.py refuses in any text, said in the document so that clients and
# the fuzzer know it: every free-form string gets this pattern. (Lone surrogates are
# refused too, but no JSON Schema regex engine can spell them; the 422 describes it.)
STORABLE_TEXT = "^[^\\u0000]*$"


def _document_storable_text(schema: dict[str, Any]) -> None:
    stack: list[Any] = [schema.get("components", {}), schema.get("paths", {})]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "string" and not {"pattern", "format", "enum", "const"} & set(
                item
            ):
                item["pattern"] = STORABLE_TEXT
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
