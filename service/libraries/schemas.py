"""Learnings libraries: request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from service.core.fields import refuse_null, settings_not_null
from service.loop.schemas import LearningOut


class LibraryOut(BaseModel):
    name: str
    description: str
    cap: int = Field(description="Active learnings kept (least supported pruned first).")
    half_life_days: float = Field(
        description="A learning not confirmed for this long has half its weight; pruned "
        "after two half-lives."
    )
    experiments: list[str] = Field(description="Keys of the experiments that read and feed it.")
    active_learnings: int
    created_at: datetime


SETTINGS = ("description", "cap", "half_life_days")


class LibrarySettings(BaseModel):
    """A library's settings; all optional on PATCH. A lowered cap (or a shorter half-life)
    applies at once: the least supported active learnings over the new cap are pruned
    (then least recently confirmed), and those faded under the new half-life."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra=settings_not_null(SETTINGS)
    )

    @field_validator(*SETTINGS, mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return refuse_null(value)

    description: str | None = Field(None, max_length=2000)
    cap: StrictInt | None = Field(
        None,
        ge=1,
        le=100,
        description="Active learnings kept. A loop run keeps the lower of this and the "
        "service's BANDITLOOP_LOOP_LEARNINGS_CAP.",
    )
    half_life_days: float | None = Field(
        None,
        ge=1,
        le=3650,
        allow_inf_nan=False,
        description="Days after which an unconfirmed learning has half its weight; pruned "
        "after two half-lives.",
    )


class LibraryChangeOut(LibraryOut):
    pruned: list[str] = Field(
        description="Learnings the change pruned at once (over a lowered cap, or faded under "
        "a shorter half-life)."
    )


class LibraryList(BaseModel):
    libraries: list[LibraryOut]


class LibraryLearnings(BaseModel):
    library: str
    learnings: list[LearningOut]


class CampaignTagEffectOut(BaseModel):
    tag: str
    effect: float = Field(description="Change in log-odds of success with the tag.")
    interval: list[float] = Field(description="95% interval of the effect (log-odds).")
    odds_ratio: float
    arms_with: int
    arms_without: int
    campaigns: int = Field(description="Campaigns whose own arms contrast the tag.")
    campaigns_agreeing: int = Field(description="Of those, how many point the same way.")


class LibraryTagEffects(BaseModel):
    library: str
    segment: str | None
    campaigns_used: int
    arms_used: int
    between_campaign_variance: float | None
    between_arm_variance: float | None
    effects: list[CampaignTagEffectOut]
    note: str | None = None


class LoopValueOut(BaseModel):
    """The loop's value: the served policy's lift over the holdout and what it gained."""

    experiment: str | None = None
    library: str | None = None
    holdout_share: float | None = None
    holdout: dict[str, Any] | None = None
    generations: list[dict[str, Any]] | None = None
    months: list[dict[str, Any]] | None = None


class FatigueOut(BaseModel):
    experiment: str
    segment: str | None
    arms: list[dict[str, Any]] = Field(
        description="Per live arm: fatigued, evidence, by_exposure (exposures and successes "
        "by earlier exposures of the same unit, 0 to 4+, and the log-odds slope per repeat), "
        "by_week (weekly counts, pattern trend/change/flat, slope per week)."
    )
