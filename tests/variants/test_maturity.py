"""An arm too young to judge: labelled in the prompt, never evidence for a learning."""

from __future__ import annotations

import pytest

from variants.inputs import LoopInput
from variants.learnings import LearningOp
from variants.llm import prompt_data
from variants.loop import plan_run
from variants.reply import LoopReply

from .factories import NOW, make_arm, make_learning


def young_input() -> LoopInput:
    return LoopInput(
        arms=[
            make_arm(1, "Discover our spring collection", rate=0.03, is_control=True),
            make_arm(2, "Ready for spring?", tags=["question"], rate=0.05, maturity=0.3),
            make_arm(3, "Have you seen the new arrivals?", tags=["question"], rate=0.05),
            # 5,000 exposures at maturity 0.08: only 400 matured, under the 500 minimum
            make_arm(4, "Shop the weekend essentials", rate=0.02, maturity=0.08),
        ],
        learnings=[make_learning("L1", "Questions win", arm_ids=(3,))],
        min_exposures=500,
    )


def test_an_immature_arm_is_labelled_and_not_ranked() -> None:
    loop_input = young_input()
    assert loop_input.arms[1].too_early(500)
    assert not loop_input.arms[2].too_early(500)
    data = prompt_data(loop_input)
    assert [a["arm_id"] for a in data["arms_ranked_worst_to_best"]] == [1, 3]
    waiting = {a["arm_id"]: a for a in data["arms_without_enough_evidence"]}
    assert set(waiting) == {2, 4}
    assert waiting[2]["maturity"] == pytest.approx(0.3)
    assert waiting[2]["judgement"].startswith("too early to judge")
    assert waiting[2]["observed_rate"] == pytest.approx(0.05)


@pytest.mark.parametrize(
    "op",
    [
        LearningOp(op="add", claim="Questions beat statements", evidence_arm_ids=[2, 3]),
        LearningOp(op="confirm", learning_id="L1", evidence_arm_ids=[2]),
        LearningOp(op="prune", learning_id="L1", evidence_arm_ids=[4]),
    ],
    ids=["add", "confirm", "prune"],
)
def test_no_learning_is_changed_on_immature_evidence(op: LearningOp) -> None:
    loop_input = young_input()
    plan = plan_run(loop_input, [], LoopReply(learning_ops=[op]), now=NOW)
    assert plan.learning_changes == []
    assert [item.id for item in plan.learnings] == ["L1"]
    assert plan.learnings[0].support == 1
    assert plan.learnings[0].status == "active"
    assert any("enough evidence" in item.reason for item in plan.dropped)


def test_the_same_operation_on_matured_evidence_is_applied() -> None:
    op = LearningOp(op="confirm", learning_id="L1", evidence_arm_ids=[3])
    plan = plan_run(young_input(), [], LoopReply(learning_ops=[op]), now=NOW)
    assert plan.learnings[0].support == 2
    evidence = plan.learnings[0].evidence[-1]
    assert evidence.maturity == 1.0
    assert evidence.observed_rate == pytest.approx(0.05)
