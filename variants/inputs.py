"""What a loop run reads: the brief, the rules, every arm with its figures, the learnings
and the rejected proposals. The service gathers these from the database; everything in
`variants/` works on these values only."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bandits.delay_model import too_early
from variants.learnings import DEFAULT_CAP, Evidence, Learning
from variants.lifecycle import ArmStatus
from variants.rules import ContentRules


class Brief(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    audience: str = ""
    goal: str = ""
    brand_voice: str = ""


class SegmentCount(BaseModel):
    """An arm's raw counts in one named segment (the gates use raw counts, as the policy)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exposures: Annotated[int, Field(ge=0)] = 0
    successes: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _consistent(self) -> SegmentCount:
        if self.successes > self.exposures:
            raise ValueError("successes exceed exposures")
        return self


class ArmView(BaseModel):
    """One arm as the loop sees it. `rate`, `ci_low` and `ci_high` are the report's
    delay-corrected figures for the primary metric (posterior mean and 95% interval, the
    report's `estimated_rate`); `observed_rate` is successes / exposures as they stand;
    `maturity` is the share of the eventual evidence that has arrived (1.0: final).
    `eligible_for_retirement` is the policy snapshot's verdict (minimum sample, P(best),
    expected loss, streaks)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    content: str
    tags: list[str] = Field(default_factory=list)
    status: ArmStatus
    exposures: Annotated[int, Field(ge=0)] = 0
    successes: Annotated[int, Field(ge=0)] = 0
    rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    ci_low: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    ci_high: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    eligible_for_retirement: bool = False
    is_control: bool = False
    status_reason: str | None = None  # why it was retired, suspended or rejected
    maturity: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    # The low end of the maturity range (the report's ``maturity_low``): it also allows for
    # a slower wave of successes the young sends cannot show yet. The report labels an arm
    # on it, and so does the loop. None: the same as `maturity`.
    maturity_low: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    # The delay fit was contradicted by the data (the report's ``delay.contradicted``): how
    # much is still to come is unknown, so the arm is too early to judge whatever `maturity`.
    maturity_unknown: bool = False
    # Counts by named segment (the all-traffic segment is the figures above).
    segments: dict[str, SegmentCount] = Field(default_factory=dict)

    @property
    def observed_rate(self) -> float:
        return self.successes / self.exposures if self.exposures else 0.0

    def too_early(self, min_exposures: int) -> bool:
        """Too young to judge at the low end of its maturity range (as the report labels it):
        see ``bandits.delay_model.too_early``; or the delay fit was contradicted."""
        return self.maturity_unknown or too_early(
            self.maturity_low_or_central, self.exposures, min_exposures
        )

    @property
    def maturity_low_or_central(self) -> float:
        return self.maturity if self.maturity_low is None else min(self.maturity_low, self.maturity)

    @model_validator(mode="after")
    def _consistent(self) -> ArmView:
        if self.successes > self.exposures:
            raise ValueError(f"arm {self.id}: successes exceed exposures")
        if not self.ci_low <= self.ci_high:
            raise ValueError(f"arm {self.id}: ci_low is above ci_high")
        return self

    def evidence(self) -> Evidence:
        return Evidence(
            arm_id=self.id,
            exposures=self.exposures,
            successes=self.successes,
            effect=self.rate,
            ci_low=self.ci_low,
            ci_high=self.ci_high,
            observed_rate=round(self.observed_rate, 6),
            maturity=round(self.maturity, 4),
        )


class LibraryArm(BaseModel):
    """An arm of another experiment in the library, as a learning may cite it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    evidence: Evidence
    content: str
    tags: list[str] = Field(default_factory=list)


class FatiguedArm(BaseModel):
    """A live arm whose rate falls with repeated exposure (bandits.fatigue), and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arm_id: int
    evidence: str


class RejectedVariant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    content: str
    reason: str = ""


class LoopInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment_key: str = ""
    brief: Brief = Field(default_factory=Brief)
    rules: ContentRules = Field(default_factory=ContentRules)
    arms: list[ArmView] = Field(default_factory=list)
    learnings: list[Learning] = Field(default_factory=list)
    rejected: list[RejectedVariant] = Field(default_factory=list)
    max_live_arms: Annotated[int, Field(ge=1)] = 8
    auto_approve: bool = False
    auto_retire: bool = False
    min_exposures: Annotated[int, Field(ge=1)] = 500
    min_successes: Annotated[int, Field(ge=0)] = 5
    learnings_cap: Annotated[int, Field(ge=1)] = DEFAULT_CAP
    max_new_variants: Annotated[int, Field(ge=0, le=20)] = 3
    # The library's other campaigns: their arms with the minimum sample, which a learning
    # operation may cite as well (each Evidence names its experiment).
    library: str = ""
    channel: str = "email"
    library_evidence: list[LibraryArm] = Field(default_factory=list)
    fatigued: list[FatiguedArm] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_arm_ids(self) -> LoopInput:
        ids = [arm.id for arm in self.arms]
        if len(ids) != len(set(ids)):
            raise ValueError("arm ids must be unique")
        return self

    def has_enough_evidence(self, arm: ArmView) -> bool:
        """The minimum sample, matured: an arm whose evidence is mostly still to arrive is
        too early to judge, so no learning is added, confirmed or pruned on it."""
        return (
            arm.exposures >= self.min_exposures
            and arm.successes >= self.min_successes
            and not arm.too_early(self.min_exposures)
        )

    def enough_in_segment(self, arm: ArmView, segment: str) -> bool:
        """The same minimum sample, within one named segment (maturity is the arm's)."""
        counts = arm.segments.get(segment)
        return (
            counts is not None
            and counts.exposures >= self.min_exposures
            and counts.successes >= self.min_successes
            and not arm.too_early(self.min_exposures)
        )

    def segment_names(self) -> list[str]:
        return sorted({name for arm in self.arms for name in arm.segments if name})

    def tags_by_arm(self) -> dict[int, list[str]]:
        """Every citable arm's tags, of this experiment and of its library's campaigns."""
        tags = {item.evidence.arm_id: item.tags for item in self.library_evidence}
        tags.update({arm.id: arm.tags for arm in self.arms})
        return tags

    def evidence_by_arm(self) -> dict[int, Evidence]:
        """The arms a learning may cite: those with the minimum sample, any status, of this
        experiment and of the other experiments in its library."""
        cited = {item.evidence.arm_id: item.evidence for item in self.library_evidence}
        cited.update({arm.id: arm.evidence() for arm in self.arms if self.has_enough_evidence(arm)})
        return cited

    def active_learnings(self) -> list[Learning]:
        """The active learnings of the library that apply to this experiment's channel."""
        return [
            item
            for item in self.learnings
            if item.status == "active" and item.channel in (None, self.channel)
        ]
