"""plan_run: the statistical pass, validation of the reply, and the live-arm cap."""

from __future__ import annotations

import openai
import pytest

from tests.fakes.copywriter_server import MISCHIEF, CopywriterControl
from tests.variants.factories import NOW, make_arm, make_learning, make_loop_input, standard_arms
from variants.learnings import LearningOp, LearningStatus
from variants.llm import embed_texts, propose
from variants.loop import (
    NO_ENDPOINT_SUMMARY,
    check_variant,
    compute_tag_effects,
    existing_variants,
    plan_run,
)
from variants.reply import LoopReply, RetireRecommendation, VariantProposal

MODEL = "copywriter-1"


def variant(content: str, **fields: object) -> VariantProposal:
    return VariantProposal.model_validate({"content": content, **fields})


def test_no_endpoint_runs_the_statistical_pass_only() -> None:
    loop_input = make_loop_input()
    plan = plan_run(loop_input, compute_tag_effects(loop_input), None, now=NOW)
    assert NO_ENDPOINT_SUMMARY in plan.summary
    assert not plan.requested_proposals
    assert [action.arm_id for action in plan.retire_proposals] == [4]
    assert plan.retire_now == []
    assert plan.learnings == loop_input.learnings
    assert plan.learning_changes == []
    assert plan.go_live == plan.new_arm_proposals == []
    assert [c.tag for c in plan.candidate_learnings] == ["question"]
    assert plan.candidate_learnings[0].ci_low > 0


def test_auto_retire_retires_eligible_arms_now() -> None:
    plan = plan_run(make_loop_input(auto_retire=True), [], None, now=NOW)
    assert [action.arm_id for action in plan.retire_now] == [4]
    assert plan.retire_proposals == []
    assert plan.summary.startswith("1 arm(s) retired")


def test_failed_llm_pass_is_reported_and_applies_nothing() -> None:
    plan = plan_run(make_loop_input(), [], None, now=NOW, llm_error="timeout: timed out")
    assert "LLM pass failed (timeout: timed out)" in plan.summary
    assert NO_ENDPOINT_SUMMARY not in plan.summary
    assert plan.learning_changes == []


def test_clean_run_end_to_end(client: openai.OpenAI, copywriter: CopywriterControl) -> None:
    loop_input = make_loop_input()
    effects = compute_tag_effects(loop_input)
    result = propose(client, MODEL, loop_input, tag_effects=effects)
    plan = plan_run(loop_input, effects, result.reply, now=NOW)

    assert plan.dropped == []
    (learning,) = plan.learnings
    assert learning.support == 3
    assert learning.last_confirmed_at == NOW
    assert [a.arm_id for a in plan.retire_proposals] == [4]
    assert plan.retire_proposals[0].source == "statistics+llm"
    assert len(plan.new_arm_proposals) == 3
    assert all(v.note == "pending review" for v in plan.new_arm_proposals)
    assert all("question" in v.tags for v in plan.new_arm_proposals)
    assert all(v.tests_learning == "L1" for v in plan.new_arm_proposals)
    assert plan.go_live == []
    assert plan.summary == (
        "1 arm(s) proposed for retirement; 1 learning change(s); 3 new arm proposal(s)"
    )


def test_mischievous_reply_is_dropped_with_reasons(
    client: openai.OpenAI, copywriter: CopywriterControl
) -> None:
    copywriter.set_mode(MISCHIEF)
    loop_input = make_loop_input()
    result = propose(client, MODEL, loop_input)
    plan = plan_run(loop_input, [], result.reply, now=NOW)

    reasons = {(item.kind, item.subject): item.reason for item in plan.dropped}
    assert "not eligible for retirement" in reasons[("retire_arm", "arm 1")]
    assert reasons[("learning_op", "add: Emoji always win")].startswith("cites no evidence")
    assert "999999" in reasons[("learning_op", "add: Arm 999999 proves everything")]
    assert (
        "banned phrase 'free shipping'"
        in reasons[("new_variant", "FREE SHIPPING on every order this week")]
    )
    assert reasons[("new_variant", "BIG SAVINGS INSIDE!")].startswith(
        "near-duplicate of arm 5 (retired)"
    )
    assert len(plan.dropped) == 5
    assert [a.arm_id for a in plan.retire_proposals] == [4]  # eligibility still rules
    assert plan.learnings == loop_input.learnings
    assert len(plan.new_arm_proposals) == 1  # the one good variant survives
    assert "5 item(s) dropped" in plan.summary


def reply_with(*variants: VariantProposal, **fields: object) -> LoopReply:
    return LoopReply.model_validate({"new_variants": list(variants), **fields})


def test_duplicates_of_rejected_arms_and_of_each_other_are_dropped() -> None:
    reply = reply_with(
        variant("Spring savings, just for you!"),  # a rejected proposal
        variant("Have you seen the new arrivals??"),  # a live arm, with a warning-worthy ??
        variant("Your wardrobe wants a refresh"),
        variant("Your wardrobe wants a refresh."),  # a duplicate of the previous one
    )
    plan = plan_run(make_loop_input(), [], reply, now=NOW)
    dropped = [item.reason for item in plan.dropped]
    assert dropped[0].startswith("near-duplicate of rejected proposal 1")
    assert dropped[1].startswith("near-duplicate of arm 3 (live)")
    assert dropped[2].startswith("near-duplicate of new variant 1 of this run")
    assert [v.content for v in plan.new_arm_proposals] == ["Your wardrobe wants a refresh"]


def test_semantic_duplicates_use_embeddings_when_given(
    client: openai.OpenAI, copywriter: CopywriterControl
) -> None:
    # Mostly the same words, reordered: lexically below the threshold, close as a bag of
    # words (cosine 0.8 with the copywriter's embedding, so the threshold is lowered).
    loop_input = make_loop_input()
    reply = reply_with(variant("Long walks need new shoes"), variant("Walk further today"))
    texts = [arm.content for arm in loop_input.arms] + [v.content for v in reply.new_variants]
    vectors = embed_texts(client, "bow", texts)
    assert vectors is not None
    embeddings = dict(zip(texts, vectors, strict=True))

    lexical_only = plan_run(loop_input, [], reply, now=NOW)
    assert len(lexical_only.new_arm_proposals) == 2
    plan = plan_run(loop_input, [], reply, now=NOW, embeddings=embeddings, semantic_threshold=0.75)
    assert [v.content for v in plan.new_arm_proposals] == ["Walk further today"]
    assert plan.dropped[0].reason.startswith("near-duplicate of arm 7 (live) (semantic")


def test_hard_rules_drop_and_warnings_travel_with_the_variant() -> None:
    reply = reply_with(
        variant("Guaranteed style for {{ city }}"),
        variant("x" * 151),
        variant("   "),
        variant("WOW, a new season is here!!", tags=["Urgency ", "urgency", ""]),
    )
    plan = plan_run(make_loop_input(), [], reply, now=NOW)
    reasons = [item.reason for item in plan.dropped]
    assert "banned phrase 'guaranteed'" in reasons[0]
    assert "unknown placeholder {{ city }}" in reasons[0]
    assert "over the maximum of 150" in reasons[1]
    assert reasons[2] == "the text is empty"
    (kept,) = plan.new_arm_proposals
    assert kept.tags == ["urgency"]
    assert {w.code for w in kept.warnings} == {"repeated_punctuation"}


def test_structural_tags_are_added() -> None:
    plan = plan_run(
        make_loop_input(), [], reply_with(variant("{{ first_name }}, room for one more?")), now=NOW
    )
    assert set(plan.new_arm_proposals[0].tags) == {"question", "personalized"}


def test_auto_approve_respects_the_live_arm_cap() -> None:
    loop_input = make_loop_input(auto_approve=True, max_live_arms=7)  # 6 live arms now
    reply = reply_with(
        variant("A warmer hello for spring"),
        variant("Your shortlist is waiting"),
        variant("Three looks, one weekend"),
    )
    plan = plan_run(loop_input, [], reply, now=NOW)
    assert [v.content for v in plan.go_live] == ["A warmer hello for spring"]
    assert len(plan.new_arm_proposals) == 2
    assert all("live-arm cap of 7 reached" in v.note for v in plan.new_arm_proposals)
    assert "2 kept as proposals: live-arm cap of 7 reached" in plan.summary


def test_auto_retire_frees_a_live_slot() -> None:
    loop_input = make_loop_input(auto_approve=True, auto_retire=True, max_live_arms=6)
    plan = plan_run(loop_input, [], reply_with(variant("A warmer hello for spring")), now=NOW)
    assert [a.arm_id for a in plan.retire_now] == [4]
    assert len(plan.go_live) == 1


def test_without_auto_approve_the_cap_is_noted() -> None:
    loop_input = make_loop_input(max_live_arms=6)
    plan = plan_run(loop_input, [], reply_with(variant("A warmer hello for spring")), now=NOW)
    assert plan.go_live == []
    assert "approving needs an arm retired first" in plan.new_arm_proposals[0].note


def test_too_many_variants_are_dropped() -> None:
    reply = reply_with(*(variant(text) for text in ["Alpha one", "Bravo two", "Charlie three"]))
    plan = plan_run(make_loop_input(max_new_variants=2), [], reply, now=NOW)
    assert len(plan.new_arm_proposals) == 2
    assert plan.dropped[0].reason == "over the limit of 2 new variants per run"


def test_retirements_of_unknown_or_retired_arms_are_dropped() -> None:
    reply = LoopReply(
        retire_arm_ids=[
            RetireRecommendation(arm_id=42, reason="?"),
            RetireRecommendation(arm_id=5, reason="again"),
            RetireRecommendation(arm_id=7, reason="too early"),
        ]
    )
    plan = plan_run(make_loop_input(), [], reply, now=NOW)
    assert [item.reason for item in plan.dropped][:2] == ["unknown arm id", "the arm is retired"]
    assert "not eligible" in plan.dropped[2].reason


def test_learning_ops_cite_only_arms_with_enough_evidence() -> None:
    reply = LoopReply(
        learning_ops=[
            LearningOp(op="add", claim="Shoes sell", evidence_arm_ids=[7]),  # 120 exposures
            LearningOp(op="add", claim="Retired arms teach too", evidence_arm_ids=[5]),
        ]
    )
    plan = plan_run(make_loop_input(), [], reply, now=NOW)
    assert "below the minimum sample" in plan.dropped[0].reason
    assert [item.claim for item in plan.learnings][-1] == "Retired arms teach too"


def test_learnings_cap_is_applied() -> None:
    learnings = [make_learning(f"L{i}", f"claim number {i}", support=i) for i in range(1, 4)]
    reply = LoopReply(learning_ops=[LearningOp(op="add", claim="new", evidence_arm_ids=[2])])
    plan = plan_run(make_loop_input(learnings=learnings, learnings_cap=3), [], reply, now=NOW)
    statuses = {item.id: item.status for item in plan.learnings}
    # L1 and the new L4 tie on support 1 and confirmation time: the older claim goes first.
    assert statuses == {
        "L1": LearningStatus.PRUNED,
        "L2": LearningStatus.ACTIVE,
        "L3": LearningStatus.ACTIVE,
        "L4": LearningStatus.ACTIVE,
    }
    assert plan.changed_learning_ids() == ["L4", "L1"]


@pytest.mark.parametrize("auto_approve", [False, True])
def test_plan_is_json_serialisable(auto_approve: bool) -> None:
    loop_input = make_loop_input(
        auto_approve=auto_approve, arms=[*standard_arms(), make_arm(9, "Tiny", exposures=0)]
    )
    plan = plan_run(
        loop_input, compute_tag_effects(loop_input), reply_with(variant("A warmer hello")), now=NOW
    )
    assert type(plan).model_validate_json(plan.model_dump_json()) == plan


def test_check_variant_revalidates_an_edited_proposal() -> None:
    loop_input = make_loop_input()
    existing = existing_variants(loop_input)
    assert check_variant("A fresh angle on spring", rules=loop_input.rules, existing=existing).ok
    duplicate = check_variant("ready for spring!", rules=loop_input.rules, existing=existing)
    assert not duplicate.ok
    assert duplicate.duplicate_of == "arm 2 (live)"
    assert duplicate.reason().startswith("near-duplicate of arm 2 (live) (lexical similarity")
    blocked = check_variant("Free shipping!!", rules=loop_input.rules, existing=existing)
    assert [v.code for v in blocked.blocks] == ["banned_phrase"]
    assert [v.code for v in blocked.warnings] == ["spam_words", "repeated_punctuation"]


def test_variant_testing_an_unknown_learning_gets_a_warning() -> None:
    reply = reply_with(variant("A fresh angle on spring", tests_learning="L9"))
    (kept,) = plan_run(make_loop_input(), [], reply, now=NOW).new_arm_proposals
    assert [w.code for w in kept.warnings] == ["unknown_learning"]
