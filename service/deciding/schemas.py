"""/v1/choose request and response models."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.core.fields import SendIdText, UnitIdText

Scalar = str | int | float | bool | None
MAX_CONTEXT_KEYS = 50


class UnitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_id: UnitIdText | None = None
    send_id: SendIdText | None = None
    context: dict[str, Scalar] | None = Field(
        None, description="Attributes such as the segment attribute; scalars only."
    )

    @field_validator("context")
    @classmethod
    def _small_context(cls, value: dict[str, Scalar] | None) -> dict[str, Scalar] | None:
        if value is None:
            return value
        if len(value) > MAX_CONTEXT_KEYS:
            raise ValueError(f"at most {MAX_CONTEXT_KEYS} context fields")
        for key, item in value.items():
            if len(key) > 64 or (isinstance(item, str) and len(item) > 256):
                raise ValueError("context keys are at most 64 and values 256 characters")
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"context value {key!r} must be a finite number")
        return value


class ChooseIn(UnitIn):
    experiment: str = Field(min_length=1, max_length=64)


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiment: str = Field(min_length=1, max_length=64)
    units: list[UnitIn] = Field(min_length=1, description="Up to 10,000 units, answered in order.")


class ArmChoice(BaseModel):
    id: int
    content: str
    payload: dict[str, Any] | None = None


class ChooseOut(BaseModel):
    decision_id: str | None = Field(
        description="Signed id to attach to the message (<= 80 chars). `null` on a fallback "
        "answer: nothing was logged, so there is nothing for events to count against."
    )
    arm: ArmChoice
    propensity: float = Field(description="Exact probability this arm had for this decision.")
    explored: bool
    policy_version: int
    fallback: bool = Field(description="True when the experiment could not decide (fail open).")
    tracked: bool = Field(
        description="False on a fallback answer: no decision is logged and `decision_id` is "
        "null, so send the message without one. True otherwise."
    )
    holdout: bool = Field(
        description="True when the unit is in the experiment's holdout (keyed decisions only): "
        "it gets the control arm (or the first arm) with propensity 1, and its outcomes measure "
        "what the loop earns against not running it. Always false for unkeyed decisions."
    )


class BatchOut(BaseModel):
    decisions: list[ChooseOut]
