"""The structured reply the proposer asks the LLM for (parsed by the openai SDK, or
validated by us in JSON mode). Every list may be empty; nothing here is trusted until
`variants.loop.plan_run` has validated it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from variants.learnings import LearningOp


class RetireRecommendation(BaseModel):
    arm_id: int
    reason: str


class VariantProposal(BaseModel):
    content: str
    tags: list[str] = Field(default_factory=list)
    rationale: str | None = None
    tests_learning: str | None = None  # a learning id ("L3") or the claim it tests


class LoopReply(BaseModel):
    learning_ops: list[LearningOp] = Field(default_factory=list)
    retire_arm_ids: list[RetireRecommendation] = Field(default_factory=list)
    new_variants: list[VariantProposal] = Field(default_factory=list)


__all__ = ["LearningOp", "LoopReply", "RetireRecommendation", "VariantProposal"]
