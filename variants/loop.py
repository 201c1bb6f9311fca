"""The loop run as pure orchestration: from the gathered input, the tag effects and the
proposer's reply (if any) to a plan that says what to apply and what was dropped and why.

Nothing here touches the database or the network. The service gathers a `LoopInput`,
computes the tag effects, calls the proposer, calls `plan_run`, and persists the plan in
one transaction, so a failure anywhere leaves nothing half-applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict

from bandits.library_effects import estimate_campaign_tag_effects
from bandits.tag_effects import TagEffect, estimate_tag_effects
from variants.inputs import ArmView, Brief, LoopInput, RejectedVariant
from variants.learnings import AppliedOp, DroppedOp, Learning, apply_operations
from variants.lifecycle import ArmStatus
from variants.reply import LoopReply, VariantProposal
from variants.rules import ContentRules, Violation, check_content, structural_tags
from variants.segments import SegmentEffects, judge_segments
from variants.similarity import (
    LEXICAL_THRESHOLD,
    SEMANTIC_THRESHOLD,
    find_near_duplicate,
    find_semantic_duplicate,
)

NO_ENDPOINT_SUMMARY = "no LLM endpoint configured: requested no proposals"
MAX_TAGS = 8


class RetireAction(BaseModel):
    """Retire now (auto_retire) or file a `retire_arm` proposal."""

    model_config = ConfigDict(frozen=True)

    arm_id: int
    reason: str
    source: Literal["statistics", "statistics+llm"]


class NewVariant(BaseModel):
    """A validated variant: goes live now (auto_approve, under the cap) or becomes a
    pending `new_arm` proposal."""

    model_config = ConfigDict(frozen=True)

    content: str
    tags: list[str]
    rationale: str
    tests_learning: str | None
    warnings: list[Violation]
    note: str = ""


class CandidateLearning(BaseModel):
    """A tag effect whose interval excludes zero: a claim the reviewer or the proposer may
    turn into a learning (it is not added by itself)."""

    model_config = ConfigDict(frozen=True)

    tag: str
    claim: str
    effect: float
    ci_low: float
    ci_high: float
    arms_with: int
    arms_without: int


class PlanItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["retire_arm", "learning_op", "new_variant", "refresh_arm"]
    subject: str
    reason: str


class LoopPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    retire_now: list[RetireAction]
    retire_proposals: list[RetireAction]
    go_live: list[NewVariant]
    new_arm_proposals: list[NewVariant]
    learnings: list[Learning]  # the full new state: write the changed items, not the file
    learning_changes: list[AppliedOp]
    candidate_learnings: list[CandidateLearning]
    applied: list[PlanItem]
    dropped: list[PlanItem]
    requested_proposals: bool
    summary: str

    def changed_learning_ids(self) -> list[str]:
        return list(dict.fromkeys(change.learning_id for change in self.learning_changes))


def compute_tag_effects(loop_input: LoopInput) -> list[TagEffect]:
    """The statistical pass's tag regression over every arm with the minimum sample: across
    the library's campaigns (an experiment-level random effect beside the arm-level one)
    when other campaigns have arms with enough evidence, else within this experiment."""
    arms = [arm for arm in loop_input.arms if loop_input.has_enough_evidence(arm)]
    if loop_input.library_evidence:
        return _campaign_tag_effects(loop_input, arms)
    if not arms:
        return []
    return estimate_tag_effects(
        np.array([arm.successes for arm in arms]),
        np.array([arm.exposures for arm in arms]),
        [arm.tags for arm in arms],
        min_exposures=loop_input.min_exposures,
    )


def _campaign_tag_effects(loop_input: LoopInput, arms: Sequence[ArmView]) -> list[TagEffect]:
    others = loop_input.library_evidence
    effects = estimate_campaign_tag_effects(
        np.array([arm.successes for arm in arms] + [o.evidence.successes for o in others]),
        np.array([arm.exposures for arm in arms] + [o.evidence.exposures for o in others]),
        [arm.tags for arm in arms] + [o.tags for o in others],
        [loop_input.experiment_key] * len(arms) + [o.evidence.experiment_key or "" for o in others],
        min_exposures=loop_input.min_exposures,
    )
    return [
        TagEffect(
            tag=effect.tag,
            effect=effect.effect,
            ci_low=effect.ci_low,
            ci_high=effect.ci_high,
            std_error=effect.std_error,
            arms_with=effect.arms_with,
            arms_without=effect.arms_without,
            exposures=effect.exposures,
            campaigns=effect.campaigns,
            campaigns_agreeing=effect.campaigns_agreeing,
        )
        for effect in effects
    ]


def plan_run(
    loop_input: LoopInput,
    tag_effects: Sequence[TagEffect],
    reply: LoopReply | None,
    *,
    now: datetime,
    llm_error: str | None = None,
    embeddings: Mapping[str, ArrayLike] | None = None,
    lexical_threshold: float = LEXICAL_THRESHOLD,
    semantic_threshold: float = SEMANTIC_THRESHOLD,
    segment_effects: Sequence[SegmentEffects] = (),
) -> LoopPlan:
    """Validate the reply against the input and decide what the run applies.

    `reply` is None when no endpoint is configured or the proposer failed (pass its error
    as `llm_error`); the statistical pass runs either way, and records where the active
    learnings hold and fail per segment (`segment_effects`, `variants.segments`), after
    the proposer's operations. `embeddings` maps texts (arm
    contents, rejected contents, proposed contents) to vectors for the semantic duplicate
    check, where the endpoint offers embeddings; texts without a vector are checked
    lexically only.
    """
    applied: list[PlanItem] = []
    dropped: list[PlanItem] = []
    arms = {arm.id: arm for arm in loop_input.arms}

    # Statistical pass: eligibility comes from the policy snapshot, not from the LLM.
    eligible = [
        arm
        for arm in loop_input.arms
        if arm.eligible_for_retirement and arm.status in (ArmStatus.LIVE, ArmStatus.SUSPENDED)
    ]
    llm_reasons = _llm_retirements(reply, arms, {arm.id for arm in eligible}, applied, dropped)
    retirements = [
        RetireAction(
            arm_id=arm.id,
            reason=_retire_reason(arm, llm_reasons.get(arm.id)),
            source="statistics+llm" if arm.id in llm_reasons else "statistics",
        )
        for arm in eligible
    ]
    verb = "retired" if loop_input.auto_retire else "proposed for retirement"
    applied += [
        PlanItem(
            kind="retire_arm", subject=f"arm {action.arm_id}", reason=f"{verb}: {action.reason}"
        )
        for action in retirements
    ]

    candidates = [_candidate(effect) for effect in tag_effects if effect.excludes_zero]
    # Fatigue: the audience has seen these too often; the run proposes a refresh (new
    # wording of the same idea, asked of the proposer) and says why.
    applied += [
        PlanItem(
            kind="refresh_arm",
            subject=f"arm {item.arm_id}",
            reason=f"refresh proposed: {item.evidence}",
        )
        for item in loop_input.fatigued
        if item.arm_id in arms
    ]

    learnings = list(loop_input.learnings)
    changes: list[AppliedOp] = []
    go_live: list[NewVariant] = []
    proposals: list[NewVariant] = []
    if reply is not None:
        learnings, changes, dropped_ops = apply_operations(
            loop_input.learnings,
            reply.learning_ops,
            evidence=loop_input.evidence_by_arm(),
            cap=loop_input.learnings_cap,
            now=now,
            where=loop_input.experiment_key or None,
            channel=loop_input.channel,
            arm_tags=loop_input.tags_by_arm(),
        )
        applied += [
            PlanItem(
                kind="learning_op",
                subject=f"{change.op} {change.learning_id}",
                reason=change.detail,
            )
            for change in changes
        ]
        dropped += [_dropped_op(item) for item in dropped_ops]

        accepted = _validate_variants(
            loop_input,
            reply.new_variants,
            learnings,
            dropped,
            embeddings=embeddings or {},
            lexical_threshold=lexical_threshold,
            semantic_threshold=semantic_threshold,
        )
        retiring_now = (
            {action.arm_id for action in retirements} if loop_input.auto_retire else set()
        )
        live = sum(
            1
            for arm in loop_input.arms
            if arm.status == ArmStatus.LIVE and arm.id not in retiring_now
        )
        cap = loop_input.max_live_arms
        for variant in accepted:
            if loop_input.auto_approve and live < cap:
                live += 1
                go_live.append(variant.model_copy(update={"note": "auto-approved: goes live now"}))
                applied.append(
                    PlanItem(kind="new_variant", subject=variant.content, reason="goes live")
                )
                continue
            if loop_input.auto_approve:
                note = (
                    f"live-arm cap of {cap} reached: kept as a proposal for review "
                    "instead of going live"
                )
            elif live >= cap:
                note = f"live-arm cap of {cap} reached: approving needs an arm retired first"
            else:
                note = "pending review"
            proposals.append(variant.model_copy(update={"note": note}))
            applied.append(PlanItem(kind="new_variant", subject=variant.content, reason=note))

    verdicts: list[AppliedOp] = []
    if segment_effects and loop_input.experiment_key:
        learnings, verdicts = judge_segments(
            learnings,
            tag_effects,
            segment_effects,
            where=loop_input.experiment_key,
            channel=loop_input.channel,
            now=now,
        )
        applied += [
            PlanItem(
                kind="learning_op",
                subject=f"{change.op} {change.learning_id}",
                reason=change.detail,
            )
            for change in verdicts
        ]
    summary = _summary(
        loop_input, reply, llm_error, retirements, changes, go_live, proposals, dropped
    )
    if verdicts:
        summary += f"; {len(verdicts)} segment verdict(s)"
    changes = changes + verdicts
    return LoopPlan(
        retire_now=retirements if loop_input.auto_retire else [],
        retire_proposals=[] if loop_input.auto_retire else retirements,
        go_live=go_live,
        new_arm_proposals=proposals,
        learnings=learnings,
        learning_changes=changes,
        candidate_learnings=candidates,
        applied=applied,
        dropped=dropped,
        requested_proposals=reply is not None,
        summary=summary,
    )


def _retire_reason(arm: ArmView, llm_reason: str | None) -> str:
    reason = (
        f"eligible for retirement: rate {arm.rate:.4f} (95% {arm.ci_low:.4f}-{arm.ci_high:.4f})"
        f" over {arm.exposures} exposures"
    )
    return f"{reason}; proposer: {llm_reason}" if llm_reason else reason


def _llm_retirements(
    reply: LoopReply | None,
    arms: Mapping[int, ArmView],
    eligible: set[int],
    applied: list[PlanItem],
    dropped: list[PlanItem],
) -> dict[int, str]:
    if reply is None:
        return {}
    reasons: dict[int, str] = {}
    for item in reply.retire_arm_ids:
        subject = f"arm {item.arm_id}"
        arm = arms.get(item.arm_id)
        if arm is None:
            dropped.append(PlanItem(kind="retire_arm", subject=subject, reason="unknown arm id"))
        elif arm.status not in (ArmStatus.LIVE, ArmStatus.SUSPENDED):
            dropped.append(
                PlanItem(kind="retire_arm", subject=subject, reason=f"the arm is {arm.status}")
            )
        elif item.arm_id not in eligible:
            dropped.append(
                PlanItem(
                    kind="retire_arm",
                    subject=subject,
                    reason="not eligible for retirement (needs the minimum sample and a "
                    "clear, lasting loss); only eligible arms can be retired by the loop",
                )
            )
        elif item.arm_id not in reasons:
            reasons[item.arm_id] = " ".join(item.reason.split())[:300]
    return reasons


def _dropped_op(item: DroppedOp) -> PlanItem:
    op = item.op
    subject = op.op + (f" {op.learning_id}" if op.learning_id else "")
    if op.claim:
        subject += f": {op.claim[:120]}"
    return PlanItem(kind="learning_op", subject=subject, reason=item.reason)


def _candidate(effect: TagEffect) -> CandidateLearning:
    direction = "raises" if effect.effect > 0 else "lowers"
    claim = (
        f"the tag '{effect.tag}' {direction} the success odds "
        f"(x{np.exp(effect.effect):.2f}, 95% interval x{np.exp(effect.ci_low):.2f} to "
        f"x{np.exp(effect.ci_high):.2f}; {effect.arms_with} arms with it, "
        f"{effect.arms_without} without)"
    )
    return CandidateLearning(
        tag=effect.tag,
        claim=claim,
        effect=effect.effect,
        ci_low=effect.ci_low,
        ci_high=effect.ci_high,
        arms_with=effect.arms_with,
        arms_without=effect.arms_without,
    )


def _clean_tags(tags: Sequence[str], content: str) -> list[str]:
    cleaned = [" ".join(tag.casefold().split()) for tag in tags]
    merged = dict.fromkeys([tag for tag in cleaned if tag][:MAX_TAGS])
    merged.update(dict.fromkeys(sorted(structural_tags(content))))
    return list(merged)


class VariantCheck(BaseModel):
    """The verdict on one variant's text: rule violations and the duplicate it repeats."""

    model_config = ConfigDict(frozen=True)

    blocks: list[Violation]
    warnings: list[Violation]
    duplicate_of: str | None = None
    duplicate_score: float | None = None
    duplicate_kind: Literal["lexical", "semantic"] | None = None

    @property
    def ok(self) -> bool:
        return not self.blocks and self.duplicate_of is None

    def reason(self) -> str:
        if self.blocks:
            return "; ".join(violation.message for violation in self.blocks)
        if self.duplicate_of is not None:
            return (
                f"near-duplicate of {self.duplicate_of} ({self.duplicate_kind} similarity "
                f"{self.duplicate_score:.2f})"
            )
        return ""


def check_variant(
    content: str,
    *,
    rules: ContentRules,
    existing: Sequence[tuple[int | str, str]],
    embeddings: Mapping[str, ArrayLike] | None = None,
    lexical_threshold: float = LEXICAL_THRESHOLD,
    semantic_threshold: float = SEMANTIC_THRESHOLD,
) -> VariantCheck:
    """Hard rules, then near-duplicates of `existing` (key, text) pairs: the same checks the
    loop runs, for re-validating a proposal a reviewer edited before approving it."""
    report = check_content(content, rules)
    if not report.ok:
        return VariantCheck(blocks=report.blocks, warnings=report.warnings)
    match = find_near_duplicate(content, existing, threshold=lexical_threshold)
    if match is None and embeddings and content in embeddings:
        vectors = [(key, embeddings[text]) for key, text in existing if text in embeddings]
        match = find_semantic_duplicate(embeddings[content], vectors, threshold=semantic_threshold)
    if match is None:
        return VariantCheck(blocks=[], warnings=report.warnings)
    return VariantCheck(
        blocks=[],
        warnings=report.warnings,
        duplicate_of=str(match.key),
        duplicate_score=match.score,
        duplicate_kind=match.kind,
    )


def existing_variants(loop_input: LoopInput) -> list[tuple[int | str, str]]:
    """Every text a new variant must not repeat: all arms (any status) and rejected
    proposals."""
    corpus: list[tuple[int | str, str]] = [
        (f"arm {arm.id} ({arm.status})", arm.content) for arm in loop_input.arms
    ]
    corpus += [
        (f"rejected proposal {index + 1}", item.content)
        for index, item in enumerate(loop_input.rejected)
    ]
    return corpus


def _validate_variants(
    loop_input: LoopInput,
    variants: Sequence[VariantProposal],
    learnings: Sequence[Learning],
    dropped: list[PlanItem],
    *,
    embeddings: Mapping[str, ArrayLike],
    lexical_threshold: float,
    semantic_threshold: float,
) -> list[NewVariant]:
    corpus = existing_variants(loop_input)
    learning_ids = {item.id for item in learnings}
    accepted: list[NewVariant] = []
    limit = loop_input.max_new_variants
    for proposal in variants:
        content = proposal.content.strip()
        subject = content[:160] or "(empty)"
        verdict = check_variant(
            content,
            rules=loop_input.rules,
            existing=corpus,
            embeddings=embeddings,
            lexical_threshold=lexical_threshold,
            semantic_threshold=semantic_threshold,
        )
        if not verdict.ok:
            dropped.append(PlanItem(kind="new_variant", subject=subject, reason=verdict.reason()))
            continue
        if len(accepted) >= limit:
            dropped.append(
                PlanItem(
                    kind="new_variant",
                    subject=subject,
                    reason=f"over the limit of {limit} new variants per run",
                )
            )
            continue
        warnings = list(verdict.warnings)
        tests = (proposal.tests_learning or "").strip() or None
        if tests is not None and tests.startswith("L") and tests[1:].isdigit():
            if tests not in learning_ids:
                warnings.append(
                    Violation(code="unknown_learning", message=f"tests unknown learning {tests}")
                )
        accepted.append(
            NewVariant(
                content=content,
                tags=_clean_tags(proposal.tags, content),
                rationale=" ".join((proposal.rationale or "").split()),
                tests_learning=tests,
                warnings=warnings,
            )
        )
        corpus.append((f"new variant {len(accepted)} of this run", content))
    return accepted


def _summary(
    loop_input: LoopInput,
    reply: LoopReply | None,
    llm_error: str | None,
    retirements: Sequence[RetireAction],
    changes: Sequence[AppliedOp],
    go_live: Sequence[NewVariant],
    proposals: Sequence[NewVariant],
    dropped: Sequence[PlanItem],
) -> str:
    parts: list[str] = []
    if retirements:
        verb = "retired" if loop_input.auto_retire else "proposed for retirement"
        parts.append(f"{len(retirements)} arm(s) {verb}")
    else:
        parts.append("no arm eligible for retirement")
    if reply is None:
        if llm_error:
            parts.append(f"LLM pass failed ({llm_error}): no proposals, nothing from it applied")
        else:
            parts.append(NO_ENDPOINT_SUMMARY)
    else:
        parts.append(f"{len(changes)} learning change(s)")
        if go_live:
            parts.append(f"{len(go_live)} new arm(s) live")
        parts.append(f"{len(proposals)} new arm proposal(s)")
        capped = sum(1 for item in proposals if "cap" in item.note)
        if capped and loop_input.auto_approve:
            parts.append(
                f"{capped} kept as proposals: live-arm cap of {loop_input.max_live_arms} reached"
            )
        if dropped:
            parts.append(f"{len(dropped)} item(s) dropped")
    return "; ".join(parts)


__all__ = [
    "NO_ENDPOINT_SUMMARY",
    "ArmView",
    "Brief",
    "CandidateLearning",
    "LoopInput",
    "LoopPlan",
    "NewVariant",
    "PlanItem",
    "RejectedVariant",
    "RetireAction",
    "VariantCheck",
    "check_variant",
    "compute_tag_effects",
    "existing_variants",
    "plan_run",
]
