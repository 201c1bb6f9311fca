"""Experiment and arm request/response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, field_validator

from service.core.fields import finite_json, refuse_null, settings_not_null
from service.core.vocabulary import EventType
from variants.rules import PLACEHOLDER_NAME_RE

FiniteJson = Annotated[dict[str, Any], AfterValidator(finite_json)]
Tag = Annotated[str, Field(min_length=1, max_length=40)]

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_CONTENT = 2000
MAX_ARMS = 50


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Guardrail(Strict):
    metric: EventType
    # Required: a guardrail without a tolerance would be stored without one (PATCH keeps
    # only what was sent) and fail every later policy refresh.
    tolerance: float = Field(gt=0, le=10, description="Relative increase tolerated, e.g. 0.25.")


class Brief(Strict):
    audience: str = Field("", max_length=2000)
    goal: str = Field("", max_length=2000)
    brand_voice: str = Field("", max_length=2000)


class ContentRulesIn(Strict):
    max_length: int = Field(150, ge=1, le=MAX_CONTENT)
    banned_phrases: list[str] = Field(default_factory=list, max_length=200)
    allowed_placeholders: list[str] = Field(default_factory=lambda: ["first_name"], max_length=50)

    # The loop builds variants.rules.ContentRules from what is stored here: anything that
    # model refuses must be refused at the door, not fail every later loop run.
    @field_validator("banned_phrases")
    @classmethod
    def _phrases(cls, phrases: list[str]) -> list[str]:
        for phrase in phrases:
            if not phrase.split() or len(phrase) > 200:
                raise ValueError("each banned phrase must be 1 to 200 characters, not blank")
        return phrases

    @field_validator("allowed_placeholders")
    @classmethod
    def _placeholders(cls, names: list[str]) -> list[str]:
        for name in names:
            if not PLACEHOLDER_NAME_RE.fullmatch(name):
                raise ValueError(f"placeholder name {name!r} must be an identifier")
        return names


def _default_guardrails() -> list[Guardrail]:
    return [
        Guardrail(metric="unsubscribe", tolerance=0.25),
        Guardrail(metric="complaint", tolerance=0.25),
    ]


# Settings the experiment always has: leaving one out of a PATCH keeps it, but null
# cannot mean "unset" for them. The others (conversion_name, segment_attribute,
# half_life_hours, loop_cadence_hours) take null to turn them off.
NOT_NULL = (
    "name",
    "channel",
    "primary_metric",
    "exposure_event",
    "attribution_window_hours",
    "guardrails",
    "exploration_share",
    "min_exposures",
    "min_successes",
    "max_live_arms",
    "brief",
    "content_rules",
    "auto_approve",
    "auto_retire",
    "library",
    "holdout_share",
)
# Shorter than a minute is no window, half-life or cadence at all (and divides by ~zero).
MIN_HOURS = 1 / 60


class ExperimentSettings(Strict):
    """Every setting of an experiment; all optional on PATCH."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra=settings_not_null(NOT_NULL)
    )

    @field_validator(*NOT_NULL, mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return refuse_null(value)

    name: str | None = Field(None, min_length=1, max_length=200)
    channel: str | None = Field(None, min_length=1, max_length=32)
    primary_metric: Literal["click", "open", "conversion", "delivered"] | None = None
    conversion_name: str | None = Field(None, min_length=1, max_length=64)
    exposure_event: Literal["decision", "delivered"] | None = None
    attribution_window_hours: float | None = Field(None, ge=MIN_HOURS, le=24 * 90)
    guardrails: list[Guardrail] | None = Field(None, max_length=7)
    exploration_share: float | None = Field(
        None, gt=0, lt=1, description="Reserved uniform exploration; never zero."
    )
    min_exposures: int | None = Field(None, ge=1, le=10_000_000)
    min_successes: int | None = Field(None, ge=0, le=1_000_000)
    max_live_arms: int | None = Field(None, ge=1, le=MAX_ARMS)
    segment_attribute: str | None = Field(None, min_length=1, max_length=64)
    half_life_hours: float | None = Field(None, ge=MIN_HOURS, le=24 * 365)
    brief: Brief | None = None
    content_rules: ContentRulesIn | None = None
    auto_approve: StrictBool | None = None
    auto_retire: StrictBool | None = None
    loop_cadence_hours: float | None = Field(None, ge=MIN_HOURS, le=24 * 90)
    library: str | None = Field(
        None,
        pattern=SLUG,
        description="The learnings library the experiment reads and feeds (created on first "
        "use); 'default' when never set.",
    )
    holdout_share: float | None = Field(
        None,
        ge=0,
        le=0.5,
        description="Share of keyed units held out of the loop: they always get the control "
        "arm and are never explored on (0: no holdout).",
    )


class ArmIn(Strict):
    content: str = Field(min_length=1, max_length=MAX_CONTENT)
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    payload: FiniteJson | None = None
    control: StrictBool = False

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not tag or len(tag) > 40:
                raise ValueError("each tag must be 1 to 40 characters")
        return list(dict.fromkeys(tags))


class ExperimentCreate(ExperimentSettings):
    key: str = Field(pattern=SLUG, description="Unique slug: lowercase letters, digits, - and _.")
    name: str = Field(min_length=1, max_length=200)
    arms: list[ArmIn] = Field(min_length=1, max_length=MAX_ARMS)


class ArmStatusChangeIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class ArmEditIn(Strict):
    content: str = Field(min_length=1, max_length=MAX_CONTENT)
    tags: list[Tag] | None = Field(None, max_length=20)
    payload: FiniteJson | None = None
    reason: str = Field("edited", min_length=1, max_length=2000)


class ContentWarning(BaseModel):
    code: str
    message: str


class ArmOut(BaseModel):
    id: int
    content: str
    payload: dict[str, Any] | None
    tags: list[str]
    origin: str
    status: str
    control: bool
    parent_id: int | None
    created_at: datetime
    warnings: list[ContentWarning] = Field(
        default_factory=list,
        description="Content-rule warnings on the arm's text (spam words, ALL CAPS, ...); "
        "hard rules refuse the text instead.",
    )


class ExperimentOut(BaseModel):
    id: int
    key: str
    name: str
    channel: str
    status: str
    epoch: int
    primary_metric: str
    conversion_name: str | None
    exposure_event: str
    attribution_window_hours: float
    guardrails: list[dict[str, Any]]
    exploration_share: float
    min_exposures: int
    min_successes: int
    max_live_arms: int
    segment_attribute: str | None
    half_life_hours: float | None
    brief: dict[str, Any]
    content_rules: dict[str, Any]
    auto_approve: bool
    auto_retire: bool
    loop_cadence_hours: float | None
    library: str = "default"
    holdout_share: float = 0.0
    created_at: datetime
    updated_at: datetime
    arms: list[ArmOut]


class ExperimentList(BaseModel):
    experiments: list[ExperimentOut]


class ExperimentChangeOut(BaseModel):
    action: str = Field(description="created, settings, pause, resume or archive")
    actor: str = Field(description="The console's person or the API key's name.")
    changes: dict[str, Any] = Field(description="The settings as changed (new values).")
    created_at: datetime


class StatusChangeOut(BaseModel):
    from_status: str | None
    to_status: str
    actor: str
    reason: str
    created_at: datetime
