from __future__ import annotations

import numpy as np
import pytest

from bandits.holdout import holdout_lift
from bandits.library_effects import fit_campaign_tag_model

TRUE = {"question": 0.4, "emoji": -0.3, "urgency": 0.0}


def campaigns(rng: np.random.Generator, count: int = 6, arms: int = 6):
    s, n, tags, names = [], [], [], []
    for e in range(count):
        shift = rng.normal(0, 0.3)  # the campaign's own level
        for _ in range(arms):
            carried = [tag for tag in TRUE if rng.random() < 0.5]
            log_odds = -3 + shift + sum(TRUE[t] for t in carried) + rng.normal(0, 0.15)
            size = 3000
            s.append(rng.binomial(size, 1 / (1 + np.exp(-log_odds))))
            n.append(size)
            tags.append(carried)
            names.append(f"c{e}")
    return s, n, tags, names


def test_intervals_cover_the_true_effects_across_campaigns() -> None:
    rng = np.random.default_rng(20261130)
    covered = total = 0
    for _ in range(60):
        model = fit_campaign_tag_model(*campaigns(rng))
        assert model is not None
        for effect in model.effects:
            covered += effect.ci_low <= TRUE[effect.tag] <= effect.ci_high
            total += 1
    assert 0.88 <= covered / total <= 0.99


def test_counts_the_campaigns_that_support_a_tag() -> None:
    s, n, tags, names = campaigns(np.random.default_rng(3))
    model = fit_campaign_tag_model(s, n, tags, names)
    assert model is not None
    question = next(e for e in model.effects if e.tag == "question")
    assert question.excludes_zero
    assert question.effect > 0
    contrasting = {
        name
        for name in set(names)
        if len({"question" in t for t, c in zip(tags, names, strict=True) if c == name}) == 2
    }
    assert question.campaigns == len(contrasting) == 5  # one campaign's arms all agree
    assert question.campaigns_agreeing == 5
    assert model.campaigns_used == 6
    assert model.sigma2 > 0.01  # the campaigns' own levels are seen


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="campaigns has 1 entries"):
        fit_campaign_tag_model([1, 2], [10, 10], [["a"], []], ["c"])
    assert fit_campaign_tag_model([1, 2], [900, 900], [["a"], []], ["c", "d"]) is None
    with pytest.raises(ValueError, match="level"):
        holdout_lift([1, 1], [2, 2], [0, 1], [2, 2], level=1.5)
    with pytest.raises(ValueError, match="successes <= decisions"):
        holdout_lift([3, 1], [2, 2], [0, 1], [2, 2])


def test_holdout_lift_by_hand() -> None:
    lift = holdout_lift([1, 0, 1, 1], [2, 2, 2, 2], [0, 1, 0], [2, 2, 2])
    assert lift is not None
    assert lift.served.rate == pytest.approx(3 / 8)
    assert lift.holdout.rate == pytest.approx(1 / 6)
    assert lift.lift == pytest.approx(3 / 8 - 1 / 6)
    assert lift.gained == pytest.approx((3 / 8 - 1 / 6) * 8)
    assert lift.ci_low < lift.lift < lift.ci_high
    assert holdout_lift([1], [2], [0, 1], [2, 2]) is None  # one served unit
