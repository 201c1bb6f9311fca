"""The library's rules: each item operation records where it held or failed, a claim that
new evidence contradicts is superseded, the cap, fading and the Markdown file."""

from __future__ import annotations

from datetime import timedelta

from tests.variants.factories import NOW, make_learning
from variants.learnings import Evidence, LearningOp, LearningStatus, apply_operations
from variants.library import PRUNE_FRESHNESS, applicable, fade, freshness, render_library_markdown

LATER = NOW + timedelta(days=30)


def evidence(arm_id: int, rate: float, experiment: str) -> Evidence:
    return Evidence(
        arm_id=arm_id,
        exposures=3000,
        successes=int(3000 * rate),
        effect=rate,
        ci_low=rate - 0.01,
        ci_high=rate + 0.01,
        experiment_key=experiment,
    )


# Arms 1-2 from campaign-1 (questions won), arms 7-8 from campaign-2 (questions lost).
EVIDENCE = {
    1: evidence(1, 0.040, "campaign-1"),
    2: evidence(2, 0.025, "campaign-1"),
    7: evidence(7, 0.020, "campaign-2"),
    8: evidence(8, 0.035, "campaign-2"),
}


def op(kind: str, **fields: object) -> LearningOp:
    return LearningOp.model_validate({"op": kind, **fields})


def test_add_records_where_it_holds_and_cites_other_campaigns() -> None:
    state, applied, dropped = apply_operations(
        [],
        [op("add", claim="Questions win", evidence_arm_ids=[1, 2])],
        evidence=EVIDENCE,
        now=NOW,
        where="campaign-3",
        channel="email",
    )
    assert dropped == []
    assert applied[0].op == "add"
    item = state[0]
    assert [(v.experiment_key, v.arm_ids) for v in item.holds] == [("campaign-3", [1, 2])]
    assert item.failed == []
    assert item.channel == "email"
    assert {e.experiment_key for e in item.evidence} == {"campaign-1"}


def test_confirm_moves_a_failed_verdict_to_holds_and_raises_support() -> None:
    old = make_learning("L1", "Questions win", support=2)
    state, _, _ = apply_operations(
        [old],
        [op("prune", learning_id="L1", evidence_arm_ids=[7])],
        evidence=EVIDENCE,
        now=NOW,
        where="campaign-2",
    )
    assert state[0].status == LearningStatus.PRUNED
    assert [v.experiment_key for v in state[0].failed] == ["campaign-2"]
    fresh = make_learning("L2", "Short lines win", support=1)
    state, _, _ = apply_operations(
        [fresh],
        [op("confirm", learning_id="L2", evidence_arm_ids=[8])],
        evidence=EVIDENCE,
        now=LATER,
        where="campaign-2",
    )
    assert state[0].support == 2
    assert state[0].last_confirmed_at == LATER
    assert [v.experiment_key for v in state[0].holds] == ["campaign-2"]


def test_a_learning_that_new_evidence_contradicts_is_superseded() -> None:
    old = make_learning("L1", "Questions win for everyone", support=3)
    old = old.model_copy(update={"holds": []})
    state, applied, dropped = apply_operations(
        [old],
        [
            op(
                "supersede",
                learning_id="L1",
                claim="Questions win only in sale campaigns",
                evidence_arm_ids=[7, 8],
            )
        ],
        evidence=EVIDENCE,
        now=LATER,
        where="campaign-2",
    )
    assert dropped == []
    by_id = {item.id: item for item in state}
    assert by_id["L1"].status == LearningStatus.SUPERSEDED
    assert by_id["L1"].superseded_by == "L2"
    assert [v.experiment_key for v in by_id["L1"].failed] == ["campaign-2"]
    new = by_id["L2"]
    assert new.status == LearningStatus.ACTIVE
    assert new.support == 3  # inherits the support of what it refines
    assert {e.arm_id for e in new.evidence} >= {7, 8}
    assert applied[0].op == "supersede"
    # The old claim cannot be confirmed any more.
    _, _, dropped = apply_operations(
        state,
        [op("confirm", learning_id="L1", evidence_arm_ids=[1])],
        evidence=EVIDENCE,
        now=LATER,
    )
    assert "superseded, not active" in dropped[0].reason


def test_the_cap_prunes_the_least_supported_first() -> None:
    current = [make_learning(f"L{i}", f"claim {i}", support=i) for i in range(1, 4)]
    state, applied, _ = apply_operations(
        current,
        [op("add", claim="claim new", evidence_arm_ids=[1])],
        evidence=EVIDENCE,
        now=LATER,
        cap=3,
    )
    active = [item.id for item in state if item.status == LearningStatus.ACTIVE]
    assert len(active) == 3
    assert "L1" not in active  # support 1 and confirmed longest ago
    assert "L4" in active
    assert [a.op for a in applied] == ["add", "cap_prune"]


def test_a_learning_nobody_confirms_fades_and_is_pruned() -> None:
    item = make_learning("L1", "Questions win")
    assert freshness(item, now=item.last_confirmed_at, half_life_days=60) == 1.0
    assert (
        abs(
            freshness(item, now=item.last_confirmed_at + timedelta(days=60), half_life_days=60)
            - 0.5
        )
        < 1e-12
    )
    kept, pruned = fade([item], now=item.last_confirmed_at + timedelta(days=119), half_life_days=60)
    assert kept[0].status == LearningStatus.ACTIVE
    assert pruned == []
    gone, pruned = fade([item], now=item.last_confirmed_at + timedelta(days=121), half_life_days=60)
    assert gone[0].status == LearningStatus.PRUNED
    assert "faded" in (gone[0].status_reason or "")
    assert pruned[0].learning_id == "L1"
    assert PRUNE_FRESHNESS == 0.25


def test_a_run_reads_its_channel_only_and_the_file_says_where() -> None:
    email = make_learning("L1", "Questions win").model_copy(update={"channel": "email"})
    push = make_learning("L2", "Emoji win").model_copy(update={"channel": "push"})
    assert [item.id for item in applicable([email, push], channel="email")] == ["L1"]
    state, _, _ = apply_operations(
        [email],
        [op("confirm", learning_id="L1", evidence_arm_ids=[8])],
        evidence=EVIDENCE,
        now=LATER,
        where="campaign-2",
    )
    text = render_library_markdown("brand", state, now=LATER)
    assert text.startswith("# Learnings library: brand")
    assert "holds in: campaign-2" in text
    assert "| campaign-2 | 8 | 3000 | 105 |" in text
