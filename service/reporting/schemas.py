"""Response models of the report and the history (so /openapi.json describes them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class GuardrailFigures(BaseModel):
    rate: float
    reference_rate: float
    probability_exceeds: float
    breached: bool


class RetirementOut(BaseModel):
    eligible: bool
    since: str | None = None


class ArmReportRow(BaseModel):
    """One arm in one segment (or overall). Three rates, each named for what it is."""

    arm_id: int
    content: str
    control: bool
    status: str | None = None
    exposures: int
    successes: int
    observed_rate: float | None = Field(
        description="successes / exposures: what has arrived so far, no correction."
    )
    estimated_rate: float = Field(
        description="Delay-corrected estimate of the rate once every success has arrived "
        "(posterior mean); P(best), expected loss and eligibility use it."
    )
    estimate_low: float = Field(
        description="95% credible interval of estimated_rate, low end. Where the slowest "
        "delays disagree with the delay model's fit (delays look mixed or heavy-tailed), the "
        "interval is widened for that; P(best) and the allocation use the narrower posterior."
    )
    estimate_high: float = Field(
        description="95% credible interval of estimated_rate, high end (see estimate_low)."
    )
    maturity: float = Field(
        description="Share of the eventual (in-window) successes of these exposures that has "
        "arrived, by the delay model: 1.0 means the observed rate is final."
    )
    maturity_low: float = Field(
        description="Lowest maturity over the delay model's uncertainty (its sigma points and "
        "those of the fit to the slowest tenth of the delays)."
    )
    maturity_high: float = Field(description="Highest maturity (see maturity_low).")
    judgement: str = Field(description="'too early to judge' while immature, else 'judged'.")
    effective_exposures: float = Field(
        description="The exposures the posterior rests on: sum of exposures x F(age), shrunk "
        "in proportion to the delay model's uncertainty (the estimate's interval carries both)."
    )
    probability_best: float
    expected_loss: float
    allocation: float
    warming_up: bool
    guardrails: dict[str, GuardrailFigures] = Field(default_factory=dict)
    retirement: RetirementOut
    rate: float | None = Field(description="Alias of observed_rate (kept for old clients).")
    posterior_mean: float = Field(description="Alias of estimated_rate (kept for old clients).")
    ci_low: float = Field(description="Alias of estimate_low (kept for old clients).")
    ci_high: float = Field(description="Alias of estimate_high (kept for old clients).")


class Interval(BaseModel):
    value: float
    ci_low: float
    ci_high: float


class LiftOut(BaseModel):
    """The best challenger against the control (or the leader, when that is not the control)."""

    leader_arm_id: int
    control_arm_id: int
    control_leads: bool
    challenger_arm_id: int = Field(
        description="The arm compared with the control: the leader, or the best challenger "
        "when the control itself leads."
    )
    relative: Interval = Field(description="challenger / control - 1, on the corrected rates.")
    absolute: Interval = Field(description="challenger - control, on the corrected rates.")
    probability_leader_beats_control: float = Field(
        description="P(challenger > control); below 0.5 when the control leads."
    )
    summary: str


class HoldoutGroupOut(BaseModel):
    units: int = Field(description="Distinct keyed units in the group.")
    decisions: int = Field(description="Matured decisions of those units.")
    successes: int
    rate: float = Field(description="Successes per decision.")
    std_error: float | None = Field(description="Clustered by unit.")


class HoldoutOut(BaseModel):
    """The served policy against the holdout (units that always get the control arm).

    Only decisions older than the attribution window count; the interval is clustered by
    unit. Without enough matured units in either group, `available` is false and `note`
    says why."""

    share: float = Field(description="The experiment's holdout_share.")
    available: bool
    note: str | None = None
    served: HoldoutGroupOut | None = None
    holdout: HoldoutGroupOut | None = Field(None, description="The holdout's size and rate.")
    lift: float | None = Field(None, description="Served rate - holdout rate (absolute).")
    interval: list[float] | None = Field(None, description="Interval of `lift` at `level`.")
    relative_lift: float | None = Field(None, description="lift / holdout rate.")
    gained: float | None = Field(
        None, description="Successes the served decisions gained over the control arm."
    )
    gained_interval: list[float] | None = None
    level: float | None = None


class ReportOut(BaseModel):
    experiment: dict[str, Any]
    policy_version: int | None
    computed_at: str | None
    arms: list[ArmReportRow]
    segments: dict[str, list[ArmReportRow]]
    lift_over_control: LiftOut | None
    evaluation: dict[str, Any] | None
    not_served: list[dict[str, Any]]
    correction: str | None = Field(
        None, description="One line on what the delay correction did to these figures."
    )
    guardrail_looks: int | None = None
    delay: dict[str, Any] | None = Field(
        None,
        description="The delay model: CDF on its grid, the fit's median and sigma, the "
        "sigma-point curves (spread_values, tail_values) and mixed (the slowest delays "
        "disagree with the fit to all of them, so the reported interval allows for a slow tail).",
    )
    changes: dict[str, str] = Field(default_factory=dict)
    holdout: HoldoutOut | None = Field(
        None,
        description="The lift of the served policy over the holdout; absent when the "
        "experiment has no holdout (holdout_share 0).",
    )


class HistoryArm(BaseModel):
    id: int
    content: str


class HistoryPoint(BaseModel):
    version: int
    epoch: int
    at: str
    arm_ids: list[int]
    arms: list[HistoryArm]
    allocation: list[float] | None
    posterior_mean: list[float] | None = Field(
        description="Corrected estimates (as estimated_rate)."
    )
    observed_rate: list[float] | None
    maturity: list[float] | None
    exposures: list[float] | None
    successes: list[float] | None


class HistoryOut(BaseModel):
    experiment: str
    points: list[HistoryPoint]
