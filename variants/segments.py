"""Where a learning holds and where it fails, segment by segment.

A learning is a claim about tags ("questions beat statements"); the library keeps, per
experiment and segment, whether it held there. Operations from the proposer judge a claim
on all traffic. This is the statistical pass's judgement per named segment, with the same
discipline as everything else: in each segment, the tag regression of
`bandits.tag_effects` over this experiment's arms that have the minimum sample *in that
segment* (and whose evidence is not mostly still to arrive). A verdict is recorded only
when the segment's interval says something:

- holds: the segment's 95% interval lies on the claim's side of zero;
- fails: it lies on the other side, or, where the claim is established on all traffic
  (its interval excludes zero), the segment's interval reaches zero and excludes the
  all-traffic effect: the claimed effect is ruled out there and no benefit is shown.

Otherwise the segment is undecided and an earlier verdict for it stays. The claim's side
is the sign of the all-traffic effect this run estimates (the library's pooled estimate
when other campaigns have evidence): an active learning is the library's reading of the
pooled data, and one that contradicts it is the proposer's to prune. The verdict is
recorded under this experiment (its arms are the evidence), with the figures behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from bandits.tag_effects import TagEffect, estimate_tag_effects
from variants.inputs import LoopInput
from variants.learnings import (
    AppliedOp,
    Learning,
    LearningStatus,
    Verdict,
    claim_tags,
    record_verdict,
)


@dataclass(frozen=True, slots=True)
class SegmentEffects:
    """One named segment's tag effects and the arms (with the minimum sample there)."""

    segment: str
    arm_ids: tuple[int, ...]
    effects: tuple[TagEffect, ...]


def segment_tag_effects(loop_input: LoopInput) -> list[SegmentEffects]:
    """Tag effects within each named segment, over this experiment's arms with the minimum
    sample in it; segments with too few such arms (or no varying tag) are left out."""
    found: list[SegmentEffects] = []
    for segment in loop_input.segment_names():
        arms = [arm for arm in loop_input.arms if loop_input.enough_in_segment(arm, segment)]
        if len(arms) < 3:
            continue
        effects = estimate_tag_effects(
            np.array([arm.segments[segment].successes for arm in arms]),
            np.array([arm.segments[segment].exposures for arm in arms]),
            [arm.tags for arm in arms],
            min_exposures=loop_input.min_exposures,
        )
        if effects:
            found.append(
                SegmentEffects(
                    segment=segment,
                    arm_ids=tuple(arm.id for arm in arms),
                    effects=tuple(effects),
                )
            )
    return found


Call = Literal["holds", "fails"]


def tag_call(segment: TagEffect, overall: TagEffect) -> Call | None:
    """The segment's verdict on a claim about one tag whose all-traffic effect is
    `overall` (see the module docstring); None when the segment's interval is silent."""
    side = 1.0 if overall.effect >= 0 else -1.0
    low, high = sorted((side * segment.ci_low, side * segment.ci_high))
    if low > 0:
        return "holds"
    if high < 0:
        return "fails"
    if overall.excludes_zero and high < side * overall.effect:
        return "fails"
    return None


def judge_segments(
    learnings: Sequence[Learning],
    overall: Sequence[TagEffect],
    by_segment: Sequence[SegmentEffects],
    *,
    where: str,
    channel: str,
    now: datetime,
) -> tuple[list[Learning], list[AppliedOp]]:
    """Record, for each active learning of `channel` whose tags the segments can judge,
    where it holds and fails in experiment `where`; returns the new state (same order)
    and one change per verdict that is new or changed side."""
    pooled = {effect.tag: effect for effect in overall}
    state: list[Learning] = []
    changes: list[AppliedOp] = []
    for item in learnings:
        if item.status != LearningStatus.ACTIVE or item.channel not in (None, channel):
            state.append(item)
            continue
        tags = [tag for tag in (item.tags or claim_tags(item.claim, pooled)) if tag in pooled]
        for segment in by_segment if tags else ():
            verdict = _segment_verdict(tags, pooled, segment)
            if verdict is None:
                continue
            call, detail = verdict
            if _already(item, where, segment.segment, call, segment.arm_ids):
                continue
            item = record_verdict(
                item,
                Verdict(
                    experiment_key=where,
                    segment=segment.segment,
                    at=now,
                    arm_ids=list(segment.arm_ids),
                    detail=detail,
                ),
                held=call == "holds",
            )
            changes.append(
                AppliedOp(
                    op=call, learning_id=item.id, detail=f"segment {segment.segment}: {detail}"
                )
            )
        state.append(item)
    return state, changes


def _segment_verdict(
    tags: Sequence[str], pooled: Mapping[str, TagEffect], segment: SegmentEffects
) -> tuple[Call, str] | None:
    """All the claim's tags must hold for it to hold; any one failing makes it fail."""
    effects = {effect.tag: effect for effect in segment.effects}
    if any(tag not in effects for tag in tags):
        return None
    calls = {tag: tag_call(effects[tag], pooled[tag]) for tag in tags}
    detail = "; ".join(_figures(effects[tag], pooled[tag]) for tag in tags)
    if any(call == "fails" for call in calls.values()):
        return "fails", detail
    if all(call == "holds" for call in calls.values()):
        return "holds", detail
    return None


def _figures(segment: TagEffect, overall: TagEffect) -> str:
    return (
        f"'{segment.tag}' x{np.exp(segment.effect):.2f} (95% x{np.exp(segment.ci_low):.2f} to "
        f"x{np.exp(segment.ci_high):.2f}; {segment.arms_with} arms with it, "
        f"{segment.arms_without} without) against x{np.exp(overall.effect):.2f} on all traffic"
    )


def _already(item: Learning, where: str, segment: str, call: Call, arm_ids: Sequence[int]) -> bool:
    """The same side on the same arms is already recorded: nothing to write."""
    recorded = item.holds if call == "holds" else item.failed
    return any(
        v.experiment_key == where and v.segment == segment and list(v.arm_ids) == list(arm_ids)
        for v in recorded
    )


__all__ = ["SegmentEffects", "judge_segments", "segment_tag_effects", "tag_call"]
