"""Loop runs, proposals and learnings: request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.experiments.schemas import MAX_CONTENT

ProposalStatus = Literal["pending", "approved", "rejected"]


class LoopRunOut(BaseModel):
    id: int
    experiment: str
    status: str = Field(
        description="running, succeeded, failed (the LLM pass or the run failed; the error "
        "says why) or abandoned (its replica stopped mid-run)."
    )
    trigger: str
    actor: str | None = Field(
        None, description="Who ran it now: the console's person or the API key's name."
    )
    started_at: datetime
    finished_at: datetime | None
    model: str | None
    prompt_digest: str | None
    input_digest: str | None
    requested_proposals: bool = Field(
        description="False when no LLM endpoint is configured: only the statistical pass ran."
    )
    summary: str
    output: dict[str, Any] | None = Field(
        description="The structured reply, tag effects, candidate learnings, whether the "
        "JSON-mode fallback was used, and the ids of what the run created."
    )
    applied: list[dict[str, Any]]
    dropped: list[dict[str, Any]] = Field(description="Each dropped item with its reason.")
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    error: str | None
    error_kind: str | None


class LoopRunList(BaseModel):
    runs: list[LoopRunOut]


class ProposalOut(BaseModel):
    id: int
    experiment: str
    loop_run_id: int | None
    kind: Literal["new_arm", "retire_arm"]
    content: str | None = Field(description="The text as proposed (or the arm to retire).")
    edited_content: str | None = Field(description="The reviewer's edit, kept beside it.")
    tags: list[str]
    rationale: str
    tests_learning: str | None
    arm_id: int | None = Field(
        description="new_arm: the proposed arm (live once approved); retire_arm: the arm."
    )
    warnings: list[dict[str, Any]] = Field(description="Content warnings for the reviewer.")
    status: ProposalStatus
    reason: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime


class ProposalList(BaseModel):
    proposals: list[ProposalOut]


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    content: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_CONTENT,
        description="Edited content for a new_arm proposal; re-validated against the rules.",
    )
    tags: list[str] | None = Field(None, max_length=20)
    note: str | None = Field(None, max_length=2000, description="Why, for the record.")

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str] | None) -> list[str] | None:
        if tags is None:
            return None
        for tag in tags:
            if not tag or len(tag) > 40:
                raise ValueError("each tag must be 1 to 40 characters")
        return list(dict.fromkeys(tags))


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(
        min_length=1, max_length=2000, description="Fed to the next loop run's prompt."
    )


class EvidenceOut(BaseModel):
    arm_id: int
    exposures: int
    successes: int
    effect: float = Field(
        description="The arm's delay-corrected success rate (estimated_rate) when the "
        "learning cited it."
    )
    ci_low: float
    ci_high: float
    observed_rate: float | None = Field(
        None, description="successes / exposures when the learning cited the arm."
    )
    maturity: float | None = Field(
        None, description="Share of the arm's eventual evidence that had arrived then."
    )
    experiment_key: str | None = Field(
        None, description="The experiment of the arm, when it is another campaign's."
    )


class VerdictOut(BaseModel):
    experiment_key: str
    segment: str = Field(description='The segment ("" for all traffic).')
    at: datetime
    arm_ids: list[int]
    detail: str | None = Field(
        None, description="For a per-segment verdict of the loop: the figures behind it."
    )


class LearningOut(BaseModel):
    id: str = Field(description="The learning's id within its library (L1, L2, ...).")
    claim: str
    evidence: list[EvidenceOut]
    support: int
    status: Literal["active", "superseded", "pruned"]
    status_reason: str | None
    superseded_by: str | None
    created_at: datetime
    last_confirmed_at: datetime
    holds: list[VerdictOut] = Field(
        default_factory=list, description="Experiments (and segments) where it held."
    )
    failed: list[VerdictOut] = Field(
        default_factory=list, description="Experiments (and segments) where it failed."
    )
    channel: str | None = Field(None, description="The channel it was learnt on.")
    tags: list[str] = Field(
        default_factory=list, description="The arm tags the claim is about (judged per segment)."
    )
    freshness: float = Field(
        1.0, description="1 when just confirmed, halving every half-life without confirmation."
    )


class LearningList(BaseModel):
    experiment: str
    library: str = Field("default", description="The library this experiment reads and feeds.")
    learnings: list[LearningOut]
