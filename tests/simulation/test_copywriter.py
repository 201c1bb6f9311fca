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
