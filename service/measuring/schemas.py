"""POST /v1/events models."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.core.fields import UtcTime


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=200, description="Your de-duplication key.")
    decision_id: str | None = Field(
        None, max_length=200, description="From /v1/choose; without one the event is ignored."
    )
    type: Literal["delivered", "open", "click", "conversion", "unsubscribe", "complaint", "bounce"]
    name: str | None = Field(None, min_length=1, max_length=64, description="Conversion name.")
    value: float | None = Field(None, description="E.g. revenue; summed, reported.")
    occurred_at: UtcTime | None = Field(
        None, description="ISO 8601 (no offset means UTC); defaults to receipt time."
    )

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("value must be a finite number")
        return value


class Rejected(BaseModel):
    index: int
    event_id: str | None
    reason: str


class IngestOut(BaseModel):
    accepted: int = Field(description="New events stored (orphans, late, machine included).")
    duplicates: int
    ignored: int = Field(description="Events without a decision id or with no meaning for us.")
    rejected: list[Rejected]
    orphans: int = Field(description="Stored, not counted: the decision was never stored.")
    late: int = Field(description="Stored, not counted: outside the attribution window.")
    machine: int = Field(description="Stored, not counted: machine opens, scanner clicks.")


EVENTS_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/EventIn"},
                        {"type": "array", "items": {"$ref": "#/components/schemas/EventIn"}},
                    ]
                }
            }
        },
    }
}
