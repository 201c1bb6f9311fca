from __future__ import annotations

from datetime import timedelta

from tests.variants.factories import NOW, make_learning
from variants.learnings import (
    Evidence,
    LearningOp,
    LearningStatus,
    apply_operations,
    render_markdown,
)

LATER = NOW + timedelta(days=1)
EVIDENCE = {
    arm_id: Evidence(
        arm_id=arm_id,
        exposures=4000 + arm_id,
        successes=150,
        effect=0.04,
        ci_low=0.03,
        ci_high=0.05,
    )
    for arm_id in (2, 3, 6)
}


def op(kind: str, **fields: object) -> LearningOp:
    return LearningOp.model_validate({"op": kind, **fields})


def test_add_assigns_next_id_and_snapshots_evidence() -> None:
    current = [make_learning("L1", "Questions win"), make_learning("L4", "Short wins")]
    state, applied, dropped = apply_operations(
        current,
        [op("add", claim="  Emoji  help ", evidence_arm_ids=[3, 6, 3])],
        evidence=EVIDENCE,
        now=LATER,
    )
    assert dropped == []
    new = state[-1]
    assert new.id == "L5"
    assert new.claim == "Emoji help"
    assert new.support == 1
    assert new.evidence == [EVIDENCE[3], EVIDENCE[6]]
    assert new.created_at == LATER
    assert applied[0].op == "add"
    assert applied[0].learning_id == "L5"


def test_ops_without_evidence_or_with_unknown_arms_are_dropped() -> None:
    current = [make_learning("L1", "Questions win")]
    ops = [
        op("add", claim="Emoji always win"),
        op("confirm", learning_id="L1", evidence_arm_ids=[2, 999]),
        op("prune", learning_id="L1", evidence_arm_ids=[]),
    ]
    state, applied, dropped = apply_operations(current, ops, evidence=EVIDENCE, now=LATER)
    assert state == current
    assert applied == []
    assert [item.reason.split(":")[0] for item in dropped] == [
        "cites no evidence",
        "cites arm ids [999] that are unknown or below the minimum sample; learnings rest "
        "only on arms with enough evidence",
        "cites no evidence",
    ]


def test_confirm_adds_support_and_refreshes_evidence() -> None:
    current = [make_learning("L1", "Questions win", support=3, arm_ids=(2,))]
    state, applied, _ = apply_operations(
        current,
        [op("confirm", learning_id="L1", evidence_arm_ids=[2, 3])],
        evidence=EVIDENCE,
        now=LATER,
    )
    (learning,) = state
    assert learning.support == 4
    assert learning.last_confirmed_at == LATER
    assert learning.evidence == [EVIDENCE[2], EVIDENCE[3]]  # arm 2's snapshot replaced
    assert applied[0].detail.startswith("support 3 -> 4")
    assert current[0].support == 3  # the input is not modified


def test_supersede_keeps_the_old_item_and_links_the_new_one() -> None:
    current = [make_learning("L1", "Questions win", support=5)]
    state, _, dropped = apply_operations(
        current,
        [
            op(
                "supersede",
                learning_id="L1",
                claim="Questions win for lapsed users",
                evidence_arm_ids=[3],
            )
        ],
        evidence=EVIDENCE,
        now=LATER,
    )
    assert dropped == []
    old, new = state
    assert old.status == LearningStatus.SUPERSEDED
    assert old.superseded_by == "L2"
    assert new.id == "L2"
    assert new.status == LearningStatus.ACTIVE
    assert new.support == 5
    assert {e.arm_id for e in new.evidence} == {2, 3}


def test_prune_marks_the_item_and_keeps_it() -> None:
    current = [make_learning("L1", "Emoji win")]
    state, applied, _ = apply_operations(
        current,
        [op("prune", learning_id="L1", evidence_arm_ids=[6])],
        evidence=EVIDENCE,
        now=LATER,
    )
    assert state[0].status == LearningStatus.PRUNED
    assert "contradicted by arms 6" in (state[0].status_reason or "")
    assert applied[0].op == "prune"


def test_one_change_per_learning_per_run_and_only_on_active_items() -> None:
    current = [
        make_learning("L1", "Questions win"),
        make_learning("L2", "Old claim", status=LearningStatus.SUPERSEDED),
    ]
    ops = [
        op("confirm", learning_id="L1", evidence_arm_ids=[2]),
        op("confirm", learning_id="L1", evidence_arm_ids=[3]),
        op("confirm", learning_id="L2", evidence_arm_ids=[2]),
        op("confirm", learning_id="L9", evidence_arm_ids=[2]),
        op("confirm", evidence_arm_ids=[2]),
        op("add", claim="questions  WIN!", evidence_arm_ids=[2]),
        op("supersede", learning_id="L1", evidence_arm_ids=[2]),
    ]
    state, applied, dropped = apply_operations(current, ops, evidence=EVIDENCE, now=LATER)
    assert state[0].support == 2
    assert len(applied) == 1
    assert [item.reason for item in dropped] == [
        "learning L1 was already changed in this run",
        "learning L2 is superseded, not active",
        "unknown learning 'L9'",
        "confirm needs a learning_id",
        "repeats active learning L1; confirm it instead",
        "supersede needs a claim",
    ]


def test_cap_prunes_lowest_support_first() -> None:
    current = [
        make_learning(
            f"L{i}", f"claim {i}", support=support, last_confirmed_at=NOW + timedelta(hours=i)
        )
        for i, support in enumerate([5, 1, 3, 1, 4], start=1)
    ]
    state, applied, _ = apply_operations(
        current,
        [op("add", claim="fresh claim", evidence_arm_ids=[2])],
        evidence=EVIDENCE,
        cap=4,
        now=LATER,
    )
    active = [item.id for item in state if item.status == LearningStatus.ACTIVE]
    pruned = [item.id for item in state if item.status == LearningStatus.PRUNED]
    # support 1 ties: L2 was confirmed longest ago, then L4, then the new L6 (confirmed now)
    assert pruned == ["L2", "L4"]
    assert active == ["L1", "L3", "L5", "L6"]
    assert [a.op for a in applied] == ["add", "cap_prune", "cap_prune"]
    assert len(state) == 6  # nothing is deleted


def test_render_markdown_shows_evidence_and_history() -> None:
    learnings = [
        make_learning("L1", "Questions | win", support=3, arm_ids=(2, 3)),
        make_learning("L2", "Old", status=LearningStatus.SUPERSEDED, status_reason="by L1"),
    ]
    text = render_markdown("spring", learnings)
    assert text.startswith("# Learnings: spring\n")
    assert "### L1: Questions \\| win" in text
    assert "- support: 3" in text
    # observed rate (from the counts for evidence recorded before it was kept), estimate,
    # interval, maturity (unknown for such evidence)
    assert "| 2 | 5000 | 200 | 0.0400 | 0.0400 | 0.0350 to 0.0450 | n/a |" in text
    assert "## Superseded" in text
    assert "## Pruned" not in text


def test_render_markdown_empty() -> None:
    assert "No active learnings yet." in render_markdown("x", [])
