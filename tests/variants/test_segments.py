"""Per-segment verdicts: where a learning holds and where it fails, judged by the loop's
statistical pass within each named segment, with the minimum sample there."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bandits.tag_effects import TagEffect
from tests.variants.factories import NOW, make_learning
from variants.inputs import ArmView, LoopInput, SegmentCount
from variants.learnings import (
    Evidence,
    LearningOp,
    LearningStatus,
    Verdict,
    apply_operations,
    claim_tags,
)
from variants.llm import prompt_data
from variants.loop import compute_tag_effects, plan_run
from variants.segments import judge_segments, segment_tag_effects, tag_call

# (content, tags, rate among lapsed users, rate among new users)
ARMS = [
    ("Ready for the new season edit?", ["question"], 0.080, 0.030),
    ("Have you seen our spring collection?", ["question"], 0.075, 0.028),
    ("Looking for the weekend essentials?", ["question"], 0.085, 0.032),
    ("Discover the styles everyone is buying", [], 0.030, 0.060),
    ("Meet fresh picks in your size", [], 0.034, 0.058),
    ("Shop this week's best sellers", [], 0.028, 0.062),
]


def effect(tag: str, value: float, low: float, high: float) -> TagEffect:
    return TagEffect(
        tag=tag,
        effect=value,
        ci_low=low,
        ci_high=high,
        std_error=(high - low) / 3.92,
        arms_with=3,
        arms_without=3,
        exposures=3000,
    )


def segmented_input(*, new_exposures: int = 4000, learning_tags: list[str] | None = None):
    arms = []
    for arm_id, (content, tags, lapsed, new) in enumerate(ARMS, start=1):
        segments = {
            "lapsed": SegmentCount(exposures=4000, successes=round(4000 * lapsed)),
            "new": SegmentCount(exposures=new_exposures, successes=round(new_exposures * new)),
        }
        exposures = sum(item.exposures for item in segments.values())
        successes = sum(item.successes for item in segments.values())
        rate = successes / exposures
        arms.append(
            ArmView(
                id=arm_id,
                content=content,
                tags=tags,
                status="live",
                exposures=exposures,
                successes=successes,
                rate=rate,
                ci_low=rate * 0.9,
                ci_high=rate * 1.1,
                segments=segments,
            )
        )
    learning = make_learning(
        "L1", "Questions beat statements", arm_ids=(1, 2), tags=learning_tags or []
    )
    return LoopInput(
        experiment_key="spring",
        arms=arms,
        learnings=[learning],
        min_exposures=500,
        min_successes=5,
    )


def test_tag_call_reads_the_interval_against_the_claims_side() -> None:
    overall = effect("question", 0.3, 0.1, 0.5)
    assert tag_call(effect("question", 0.6, 0.3, 0.9), overall) == "holds"
    assert tag_call(effect("question", -0.5, -0.8, -0.2), overall) == "fails"
    # No benefit shown, and the claimed size is ruled out: fails.
    assert tag_call(effect("question", 0.0, -0.2, 0.2), overall) == "fails"
    # Too wide to say either: undecided.
    assert tag_call(effect("question", 0.1, -0.4, 0.6), overall) is None
    # A claim in the other direction (the tag lowers the odds) is judged the other way.
    lowers = effect("emoji", -0.3, -0.5, -0.1)
    assert tag_call(effect("emoji", -0.4, -0.7, -0.1), lowers) == "holds"
    assert tag_call(effect("emoji", 0.4, 0.1, 0.7), lowers) == "fails"
    # When the claim is not established on all traffic, only a contrary interval fails it.
    loose = effect("question", 0.2, -0.1, 0.5)
    assert tag_call(effect("question", 0.0, -0.1, 0.1), loose) is None


def test_a_learning_holds_in_one_segment_and_fails_in_another() -> None:
    loop_input = segmented_input()
    by_segment = segment_tag_effects(loop_input)
    assert [item.segment for item in by_segment] == ["lapsed", "new"]
    lapsed, new = (item.effects[0] for item in by_segment)
    assert lapsed.tag == new.tag == "question"
    assert lapsed.ci_low > 0 > new.ci_high

    overall = [effect("question", 0.25, 0.05, 0.45)]
    state, changes = judge_segments(
        loop_input.learnings, overall, by_segment, where="spring", channel="email", now=NOW
    )
    (learning,) = state
    assert [(v.experiment_key, v.segment) for v in learning.holds] == [("spring", "lapsed")]
    assert [(v.experiment_key, v.segment) for v in learning.failed] == [("spring", "new")]
    assert learning.holds[0].arm_ids == [1, 2, 3, 4, 5, 6]
    assert "'question' x" in (learning.holds[0].detail or "")
    assert [(c.op, c.learning_id) for c in changes] == [("holds", "L1"), ("fails", "L1")]
    # Support and confirmation are the operations' business, not the verdicts'.
    assert learning.support == 1
    assert learning.last_confirmed_at == NOW

    # Judged again on the same arms: nothing new to write.
    again, changes = judge_segments(
        state, overall, by_segment, where="spring", channel="email", now=NOW + timedelta(days=1)
    )
    assert changes == []
    assert again == state


def test_a_segment_under_the_minimum_sample_gives_no_verdict() -> None:
    loop_input = segmented_input(new_exposures=400)  # under min_exposures=500 in "new"
    by_segment = segment_tag_effects(loop_input)
    assert [item.segment for item in by_segment] == ["lapsed"]
    state, _ = judge_segments(
        loop_input.learnings,
        [effect("question", 0.25, 0.05, 0.45)],
        by_segment,
        where="spring",
        channel="email",
        now=NOW,
    )
    assert [v.segment for v in state[0].holds] == ["lapsed"]
    assert state[0].failed == []


def test_an_earlier_verdict_moves_when_the_segment_turns() -> None:
    loop_input = segmented_input()
    old = Verdict(experiment_key="spring", segment="new", at=NOW, arm_ids=[1, 2])
    learning = loop_input.learnings[0].model_copy(update={"holds": [old]})
    state, changes = judge_segments(
        [learning],
        [effect("question", 0.25, 0.05, 0.45)],
        segment_tag_effects(loop_input),
        where="spring",
        channel="email",
        now=NOW,
    )
    assert [v.segment for v in state[0].holds] == ["lapsed"]
    assert [v.segment for v in state[0].failed] == ["new"]
    assert ("fails", "L1") in [(c.op, c.learning_id) for c in changes]


def test_only_active_learnings_of_the_channel_about_a_known_tag_are_judged() -> None:
    loop_input = segmented_input()
    learnings = [
        make_learning("L1", "Questions beat statements", status=LearningStatus.PRUNED),
        make_learning("L2", "Questions beat statements on push", channel="push"),
        make_learning("L3", "Short subject lines win"),
    ]
    state, changes = judge_segments(
        learnings,
        [effect("question", 0.25, 0.05, 0.45)],
        segment_tag_effects(loop_input),
        where="spring",
        channel="email",
        now=NOW,
    )
    assert changes == []
    assert state == learnings


def test_the_plan_records_segment_verdicts_without_a_reply_and_the_prompt_carries_them() -> None:
    loop_input = segmented_input(learning_tags=["question"])
    by_segment = segment_tag_effects(loop_input)
    plan = plan_run(
        loop_input, compute_tag_effects(loop_input), None, now=NOW, segment_effects=by_segment
    )
    (learning,) = plan.learnings
    assert [v.segment for v in learning.holds] == ["lapsed"]
    assert [v.segment for v in learning.failed] == ["new"]
    assert plan.changed_learning_ids() == ["L1"]
    assert "2 segment verdict(s)" in plan.summary
    assert any(item.subject == "holds L1" for item in plan.applied)

    data = prompt_data(
        loop_input.model_copy(update={"learnings": plan.learnings}),
        compute_tag_effects(loop_input),
        by_segment,
    )
    (shown,) = data["learnings"]
    assert shown["holds_in"] == ["spring / lapsed"]
    assert shown["failed_in"] == ["spring / new"]
    assert shown["tags"] == ["question"]
    assert set(data["tag_effects_by_segment"]) == {"lapsed", "new"}
    assert data["tag_effects_by_segment"]["new"][0]["interval_95"][1] < 0


@pytest.mark.parametrize(
    ("claim", "tags"),
    [
        ("Questions beat statements for lapsed users", ["question"]),
        ("Personalised greetings with emojis", ["personalized", "emoji"]),
        ("Variants tagged 'urgency' earn more", ["urgency"]),
        ("Short subject lines win", []),
    ],
)
def test_claim_tags_reads_the_tags_a_claim_names(claim: str, tags: list[str]) -> None:
    assert claim_tags(claim, ["question", "personalized", "urgency", "emoji"]) == sorted(
        tags, key=["question", "personalized", "urgency", "emoji"].index
    )


def test_an_add_records_the_tags_its_claim_is_about() -> None:
    evidence = {
        arm_id: Evidence(
            arm_id=arm_id, exposures=900, successes=40, effect=0.04, ci_low=0.03, ci_high=0.05
        )
        for arm_id in (1, 2)
    }
    arm_tags = {1: ["question", "emoji"], 2: ["question"]}
    ops = [
        LearningOp(op="add", claim="Questions beat statements", evidence_arm_ids=[1]),
        LearningOp(op="add", claim="Sparkle works", evidence_arm_ids=[1], tags=["Emoji", "number"]),
        LearningOp(op="add", claim="Urgency wins", evidence_arm_ids=[2]),
    ]
    state, _applied, dropped = apply_operations(
        [], ops, evidence=evidence, now=NOW, arm_tags=arm_tags
    )
    assert dropped == []
    # Read from the claim; given (only those a cited arm carries); none the arms carry.
    assert [item.tags for item in state] == [["question"], ["emoji"], []]
