"""Complete the generated OpenAPI document with the models routes parse by hand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from service.schemas.choose import BatchIn, ChooseIn
from service.schemas.events import EventIn

# Bodies read as raw bytes (to store them exactly) are documented through these models.
EXTRA_MODELS: tuple[type[BaseModel], ...] = (EventIn, ChooseIn, BatchIn)


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
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
