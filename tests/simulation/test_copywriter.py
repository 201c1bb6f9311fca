"""The scripted copywriter with no evidence explores in an order that knows nothing of the
audience: seeded, repeatable, and not always starting on the audience's best tag."""

from __future__ import annotations

from collections import Counter
from typing import Any

from simulation.copywriter import KNOWN_TAGS, exploration_order, write_reply


def _no_evidence(first_text: str = "Discover the new season edit") -> dict[str, Any]:
    waiting = [
        {"arm_id": i + 1, "content": text, "tags": [], "exposures": 0, "successes": 0}
        for i, text in enumerate([first_text, "Shop our spring collection"])
    ]
    return {
        "arms_ranked_worst_to_best": [],
        "arms_without_enough_evidence": waiting,
        "rejected_variants": [],
        "learnings": [],
        "tag_effects_log_odds": [],
        "retirement_eligible_arm_ids": [],
        "max_new_variants": 3,
        "content_rules": {"allowed_placeholders": ["first_name"], "max_length": 80},
    }


def test_the_first_tag_tried_without_evidence_is_spread_over_the_tags_by_seed() -> None:
    followed = Counter(
        write_reply(_no_evidence(), exploration_seed=seed)["new_variants"][0]["rationale"]
        for seed in range(200)
    )
    # Five tags, 200 seeds: each is followed first about 40 times, none always.
    assert set(followed) == {f"follows {tag}" for tag in KNOWN_TAGS}
    assert max(followed.values()) < 70


def test_the_order_is_repeatable_and_depends_on_the_seed_and_the_arms_only() -> None:
    data = _no_evidence()
    assert exploration_order(data, 7) == exploration_order(dict(data), 7)
    assert sorted(exploration_order(data, 7)) == sorted(KNOWN_TAGS)
    orders = {tuple(exploration_order(data, seed)) for seed in range(20)}
    assert len(orders) > 10
    other_arms = {
        tuple(exploration_order(_no_evidence(f"Discover look {n}"), 7)) for n in range(20)
    }
    assert len(other_arms) > 10


def _with_effects(effects: dict[str, tuple[float, float, float]], learnings=()) -> dict[str, Any]:
    ranked = [
        {"arm_id": 1, "content": "Ready for spring?", "tags": ["question"]},
        {"arm_id": 2, "content": "{{ first_name }}, shop spring", "tags": ["personalized"]},
        {"arm_id": 3, "content": "Last chance: spring", "tags": ["urgency"]},
    ]
    return _no_evidence() | {
        "arms_ranked_worst_to_best": ranked,
        "tag_effects_log_odds": [
            {"tag": tag, "effect": value, "interval_95": [low, high]}
            for tag, (value, low, high) in effects.items()
        ],
        "learnings": list(learnings),
    }


def test_a_tag_that_leans_positive_gets_a_labelled_tentative_claim() -> None:
    data = _with_effects(
        {
            "question": (0.30, 0.10, 0.50),  # excludes zero: a firm claim
            "personalized": (0.20, -0.05, 0.45),  # 1.6 standard errors: tentative
            "urgency": (0.05, -0.30, 0.40),  # no lean worth a claim
        }
    )
    reply = write_reply(data)
    claims = {op["tags"][0]: op["claim"] for op in reply["learning_ops"] if op["op"] == "add"}
    assert set(claims) == {"question", "personalized"}
    assert not claims["question"].startswith("Tentative")
    assert claims["personalized"].startswith("Tentative:")
    assert "still includes no effect" in claims["personalized"]
    # Variants combine the two tags the evidence points to.
    assert reply["new_variants"][0]["rationale"] == "follows question, personalized"
    # Without the options it answers as before: one firm claim, one tag followed.
    before = write_reply(data, tentative=False, combine=False)
    assert [op["tags"] for op in before["learning_ops"]] == [["question"]]
    assert before["new_variants"][0]["rationale"] == "follows question"


def test_a_tentative_claim_is_superseded_when_firm_and_pruned_when_it_turns() -> None:
    tentative = {"id": "L1", "claim": "Tentative: variants tagged 'personalized' may earn more"}
    firm = write_reply(_with_effects({"personalized": (0.3, 0.1, 0.5)}, [tentative]))
    (op,) = firm["learning_ops"]
    assert (op["op"], op["learning_id"]) == ("supersede", "L1")
    assert not op["claim"].startswith("Tentative")
    turned = write_reply(_with_effects({"personalized": (-0.05, -0.3, 0.2)}, [tentative]))
    assert [(op["op"], op["learning_id"]) for op in turned["learning_ops"]] == [("prune", "L1")]
    # Still leaning, not yet firm: neither confirmed (its support stays honest) nor dropped.
    leaning = write_reply(_with_effects({"personalized": (0.2, -0.05, 0.45)}, [tentative]))
    assert leaning["learning_ops"] == []
