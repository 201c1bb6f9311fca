"""Tag effects: a random-effects meta-regression of arm log-odds on tags."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.tag_effects import estimate_tag_effects, fit_tag_model

TRUE_EFFECT = 0.3
BASE_LOG_ODDS = -3.0


def simulate(
    rng: np.random.Generator, *, arms: int = 12, exposures: int = 20_000, tau: float = 0.25
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Arms whose log-odds are base + 0.3 * question + arm noise (sd tau) that the tags do
    not explain; `emoji` is a tag with no effect."""
    tags: list[list[str]] = [["question"] if arm % 2 else [] for arm in range(arms)]
    for entry in tags:
        if rng.random() < 0.5:
            entry.append("emoji")
    question = np.array([1.0 if "question" in entry else 0.0 for entry in tags])
    log_odds = BASE_LOG_ODDS + TRUE_EFFECT * question + rng.normal(0.0, tau, arms)
    successes = rng.binomial(exposures, 1.0 / (1.0 + np.exp(-log_odds)))
    return successes, np.full(arms, exposures), tags


def naive_pooled_interval(
    successes: np.ndarray, exposures: np.ndarray, tags: list[list[str]], tag: str
) -> tuple[float, float]:
    """Log odds ratio of pooled arms with the tag vs without, as if recipients were the
    unit: what the regression must not do."""
    carries = np.array([tag in entry for entry in tags])
    s1, n1 = successes[carries].sum(), exposures[carries].sum()
    s0, n0 = successes[~carries].sum(), exposures[~carries].sum()
    effect = np.log(s1 / (n1 - s1)) - np.log(s0 / (n0 - s0))
    se = np.sqrt(1 / s1 + 1 / (n1 - s1) + 1 / s0 + 1 / (n0 - s0))
    return effect - 1.96 * se, effect + 1.96 * se


def test_fixed_example() -> None:
    model = fit_tag_model(
        [30, 52, 49, 24, 20, 31, 60, 45],
        [1000, 1000, 1100, 1000, 1000, 1000, 1200, 900],
        [[], ["question"], ["question", "emoji"], [], ["emoji"], [], ["question"], ["emoji"]],
    )
    assert model is not None
    assert model.df == 5
    assert model.arms_used == 8
    assert model.tau2 == pytest.approx(0.06223, abs=1e-5)
    emoji, question = model.effects
    assert question.tag == "question"
    assert question.effect == pytest.approx(0.48880, abs=1e-5)
    assert question.ci_low == pytest.approx(-0.08672, abs=1e-5)
    assert question.ci_high == pytest.approx(1.06432, abs=1e-5)
    assert (question.arms_with, question.arms_without, question.exposures) == (3, 5, 3300)
    assert emoji.effect == pytest.approx(0.05419, abs=1e-5)


def test_recovers_the_effect_with_nominal_coverage() -> None:
    hits, estimates = 0, []
    seeds = range(300)
    for seed in seeds:
        successes, exposures, tags = simulate(np.random.default_rng(seed))
        effects = {e.tag: e for e in estimate_tag_effects(successes, exposures, tags)}
        question = effects["question"]
        estimates.append(question.effect)
        hits += question.ci_low <= TRUE_EFFECT <= question.ci_high
    coverage = hits / len(seeds)
    # 95% nominal; with 300 draws the binomial sd is 1.3 points.
    assert 0.91 <= coverage <= 0.99
    assert np.mean(estimates) == pytest.approx(TRUE_EFFECT, abs=0.03)


def test_interval_is_much_wider_than_pooling_exposures() -> None:
    rng = np.random.default_rng(11)
    naive_misses, ratios = 0, []
    for _ in range(100):
        successes, exposures, tags = simulate(rng, exposures=50_000, tau=0.3)
        question = next(
            e for e in estimate_tag_effects(successes, exposures, tags) if e.tag == "question"
        )
        low, high = naive_pooled_interval(successes, exposures, tags, "question")
        ratios.append((question.ci_high - question.ci_low) / (high - low))
        naive_misses += not low <= TRUE_EFFECT <= high
    assert np.median(ratios) > 5
    assert naive_misses > 30  # the pooled interval misses far more than 5% of the time


def test_no_heterogeneity_gives_tau2_near_zero_and_tight_intervals() -> None:
    successes, exposures, tags = simulate(np.random.default_rng(3), tau=0.0, exposures=200_000)
    model = fit_tag_model(successes, exposures, tags)
    assert model is not None
    assert model.tau2 < 0.002
    question = next(e for e in model.effects if e.tag == "question")
    assert question.ci_low <= TRUE_EFFECT <= question.ci_high
    assert question.ci_high - question.ci_low < 0.15


def test_arms_below_min_exposures_are_left_out() -> None:
    successes = [30, 50, 45, 5, 1]
    exposures = [1000, 1000, 1000, 100, 499]
    tags = [[], ["question"], ["question"], [], []]
    model = fit_tag_model(successes, exposures, tags, min_exposures=500)
    assert model is not None
    assert model.arms_used == 3
    assert model.effects[0].arms_without == 1


def test_too_few_arms_or_no_varying_tag_gives_nothing() -> None:
    assert estimate_tag_effects([10, 20], [1000, 1000], [[], ["question"]]) == []
    assert estimate_tag_effects([], [], []) == []
    same = [["question"]] * 4
    assert estimate_tag_effects([10, 20, 30, 40], [1000] * 4, same) == []


def test_confounded_tags_are_reported_once() -> None:
    tags = [["question", "emoji"], ["question", "emoji"], [], [], ["urgency"]]
    effects = estimate_tag_effects([50, 55, 30, 32, 40], [1000] * 5, tags)
    assert [e.tag for e in effects] == ["emoji", "urgency"]


def test_keeps_a_residual_degree_of_freedom() -> None:
    tags = [["a"], ["b"], ["c"], ["a", "b"]]
    model = fit_tag_model([10, 20, 30, 40], [1000] * 4, tags)
    assert model is not None
    assert model.df >= 1


def test_zero_and_all_successes_stay_finite() -> None:
    effects = estimate_tag_effects([0, 1000, 30, 40], [1000] * 4, [["x"], [], [], ["x"]])
    assert all(np.isfinite([e.effect, e.ci_low, e.ci_high]).all() for e in effects)


@pytest.mark.parametrize(
    ("successes", "exposures", "tags", "message"),
    [
        ([1, 2], [10], [[], []], "successes has 2 arms but exposures has 1"),
        ([[1]], [[10]], [[]], "1-D"),
        ([1, 2], [10, 10], [[]], "tags has 1 entries"),
        ([11, 2], [10, 10], [[], []], "must not exceed"),
        ([-1, 2], [10, 10], [[], []], "must not be negative"),
        ([np.nan, 2], [10, 10], [[], []], "finite"),
    ],
)
def test_invalid_inputs(
    successes: object, exposures: object, tags: list[list[str]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        estimate_tag_effects(successes, exposures, tags)  # type: ignore[arg-type]


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="min_exposures"):
        estimate_tag_effects([1], [10], [[]], min_exposures=0)
    with pytest.raises(ValueError, match="confidence"):
        estimate_tag_effects([1], [10], [[]], confidence=1.0)


def test_a_string_is_not_a_list_of_tags() -> None:
    with pytest.raises(TypeError, match="not the string 'question'"):
        estimate_tag_effects([1, 2], [10, 10], ["question", []])
