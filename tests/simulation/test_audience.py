"""The simulated audience: pinned scenarios, outcome draws, common random numbers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.special import expit, logit

from simulation.audience import (
    ArmSpec,
    DelaySpec,
    RateChange,
    Scenario,
    TagAudience,
    best_rate,
    draw_outcomes,
    draw_segments,
    pinned_scenarios,
    simulation_streams,
    tag_audience,
    tag_scenario,
    true_rate,
)

SCENARIOS = pinned_scenarios()


def binomial_bound(p: float, n: int, sigmas: float = 4.0) -> float:
    return sigmas * math.sqrt(p * (1.0 - p) / n)


# The pinned scenarios.


def test_the_pinned_set() -> None:
    assert sorted(SCENARIOS) == [
        "arms_added_midrun",
        "best_arm_swap",
        "conversions",
        "guardrail_trap",
        "segments",
        "stationary",
        "stationary_many",
    ]
    for name, scenario in SCENARIOS.items():
        assert scenario.name == name
        assert scenario.description
        assert len(set(scenario.arm_names)) == len(scenario.arms)
        for arm in scenario.arms:
            assert 0.0 < arm.rate_click < 1.0
            assert 0.001 <= arm.rate_unsub <= 0.0075


def test_click_scenarios_use_email_click_rates() -> None:
    for name in ("stationary", "stationary_many", "best_arm_swap", "guardrail_trap"):
        scenario = SCENARIOS[name]
        for arm in scenario.arms:
            for t in (0.0, scenario.horizon_hours):
                assert 0.01 <= arm.rate("all", t) <= 0.05, (name, arm.name)
    assert len(SCENARIOS["stationary"].arms) == 5
    assert len(SCENARIOS["stationary_many"].arms) == 8


def test_conversions_are_rare_and_slow() -> None:
    scenario = SCENARIOS["conversions"]
    assert scenario.primary_metric == "conversion"
    assert all(0.003 <= arm.rate_click <= 0.015 for arm in scenario.arms)
    # About 5% of conversions land after a 7-day attribution window.
    assert 1.0 - float(scenario.delay.cdf(168.0)) == pytest.approx(0.0508, abs=1e-4)


def test_click_delays_run_from_minutes_to_days() -> None:
    delay = SCENARIOS["stationary"].delay
    assert delay.quantile(0.10) == pytest.approx(0.1992, abs=1e-4)  # 12 minutes
    assert delay.quantile(0.90) == pytest.approx(20.08, abs=0.01)
    assert delay.quantile(0.99) == pytest.approx(131.7, abs=0.1)  # five and a half days


def test_best_arm_swap() -> None:
    scenario = SCENARIOS["best_arm_swap"]
    before = [true_rate(scenario, i, "all", 71.9) for i in range(4)]
    after = [true_rate(scenario, i, "all", 72.0) for i in range(4)]
    assert int(np.argmax(before)) == 3
    assert int(np.argmax(after)) == 1
    assert best_rate(scenario, "all", 71.9) == 0.040
    assert best_rate(scenario, "all", 72.0) == 0.045
    assert scenario.change_points() == (72.0,)


def test_guardrail_trap() -> None:
    arms = SCENARIOS["guardrail_trap"].arms
    best = max(arms, key=lambda arm: arm.rate_click)
    others = [arm for arm in arms if arm is not best]
    assert best.rate_unsub == max(arm.rate_unsub for arm in arms)
    assert all(2.0 <= best.rate_unsub / arm.rate_unsub <= 3.0 for arm in others)


def test_arms_added_midrun() -> None:
    scenario = SCENARIOS["arms_added_midrun"]
    assert scenario.live_arms(47.9) == (0, 1, 2)
    assert scenario.live_arms(48.0) == (0, 1, 2, 3, 4)
    assert best_rate(scenario, "all", 47.9) == 0.030
    assert best_rate(scenario, "all", 48.0) == 0.042
    # Regret against the arms a policy actually has.
    assert best_rate(scenario, "all", 100.0, live_arms=[0, 1]) == 0.025
    with pytest.raises(ValueError, match="^t_hours"):
        draw_outcomes(scenario, 3, "all", 47.0, 1, np.random.default_rng(0))


def test_segments_have_different_winners() -> None:
    scenario = SCENARIOS["segments"]
    winners = {
        segment: int(np.argmax([true_rate(scenario, i, segment, 0.0) for i in range(4)]))
        for segment in scenario.segments
    }
    assert winners == {"engaged": 0, "lapsed": 1}
    assert dict(scenario.segments) == {"engaged": 0.6, "lapsed": 0.4}


def test_pinned_scenarios_are_fresh_and_immutable() -> None:
    first, second = pinned_scenarios(), pinned_scenarios()
    assert first == second
    with pytest.raises(AttributeError):
        first["stationary"].horizon_hours = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        first["segments"].segments["engaged"] = 1.0  # type: ignore[index]


# Drawing outcomes.


def test_rates_match_the_spec_within_binomial_bounds() -> None:
    scenario = SCENARIOS["guardrail_trap"]
    n = 200_000
    rng = np.random.default_rng(2024)
    for i, arm in enumerate(scenario.arms):
        outcomes = draw_outcomes(scenario, i, "all", 0.0, n, rng)
        assert abs(outcomes.click.mean() - arm.rate_click) < binomial_bound(arm.rate_click, n)
        assert abs(outcomes.unsub.mean() - arm.rate_unsub) < binomial_bound(arm.rate_unsub, n)


def test_segment_rates_within_binomial_bounds() -> None:
    scenario = SCENARIOS["segments"]
    n = 100_000
    rng = np.random.default_rng(5)
    for segment, expected in (("engaged", 0.045), ("lapsed", 0.012)):
        clicks = draw_outcomes(scenario, 0, segment, 10.0, n, rng).click
        assert abs(clicks.mean() - expected) < binomial_bound(expected, n)


def test_fixed_seed_counts() -> None:
    outcomes = draw_outcomes(
        SCENARIOS["stationary"], 4, "all", 0.0, 10_000, np.random.default_rng(0)
    )
    assert int(outcomes.click.sum()) == 371  # rate 0.040: expected 400 +- 20
    assert int(outcomes.unsub.sum()) == 25  # rate 0.0025: expected 25 +- 5


@pytest.mark.parametrize("name", ["stationary", "conversions"])
def test_delays_match_the_spec_median(name: str) -> None:
    scenario = SCENARIOS[name]
    outcomes = draw_outcomes(scenario, 0, "all", 0.0, 400_000, np.random.default_rng(3))
    delays = outcomes.click_delay_hours[outcomes.click]
    m = delays.size
    assert m > 1000
    # The share of delays below the specified median is binomial(m, 1/2).
    below = float(np.mean(delays <= scenario.delay.median_hours))
    assert abs(below - 0.5) < binomial_bound(0.5, m)
    p90 = scenario.delay.quantile(0.9)
    assert abs(float(np.mean(delays <= p90)) - 0.9) < binomial_bound(0.9, m)
    unsub_delays = outcomes.unsub_delay_hours[outcomes.unsub]
    below = float(np.mean(unsub_delays <= scenario.unsub_delay.median_hours))
    assert abs(below - 0.5) < binomial_bound(0.5, unsub_delays.size)


def test_delays_are_nan_exactly_where_nothing_happened() -> None:
    outcomes = draw_outcomes(SCENARIOS["stationary"], 2, "all", 0.0, 5000, np.random.default_rng(1))
    assert np.all(np.isnan(outcomes.click_delay_hours) == ~outcomes.click)
    assert np.all(np.isnan(outcomes.unsub_delay_hours) == ~outcomes.unsub)
    assert np.all(outcomes.click_delay_hours[outcomes.click] > 0.0)


def test_rate_changes_apply_at_their_time() -> None:
    scenario = SCENARIOS["best_arm_swap"]
    n = 100_000
    early = draw_outcomes(scenario, 3, "all", 10.0, n, np.random.default_rng(9)).click
    late = draw_outcomes(scenario, 3, "all", 100.0, n, np.random.default_rng(9)).click
    assert abs(early.mean() - 0.040) < binomial_bound(0.040, n)
    assert abs(late.mean() - 0.018) < binomial_bound(0.018, n)
    # Same uniforms, lower rate: every late click was also an early click.
    assert np.all(early[late])


def test_segment_draws_follow_the_weights() -> None:
    scenario = SCENARIOS["segments"]
    n = 50_000
    segments = draw_segments(scenario, n, np.random.default_rng(0))
    assert set(np.unique(segments)) == {"engaged", "lapsed"}
    assert abs(float(np.mean(segments == "engaged")) - 0.6) < binomial_bound(0.6, n)


def test_a_removed_arm_still_resolves() -> None:
    scenario = Scenario(
        "retire",
        "one arm retired at 10 h",
        (ArmSpec("a", 0.02), ArmSpec("b", 0.03, removed_at_hours=10.0)),
    )
    assert scenario.live_arms(10.0) == (0,)
    assert scenario.change_points() == (10.0,)
    assert draw_outcomes(scenario, 1, "all", 11.0, 3, np.random.default_rng(0)).click.size == 3


# Common random numbers.


def test_same_seed_same_outcomes() -> None:
    scenario = SCENARIOS["stationary"]
    one, two = simulation_streams(7, scenario), simulation_streams(7, scenario)
    first = draw_outcomes(scenario, 1, "all", 0.0, 1000, one.arms[1])
    second = draw_outcomes(scenario, 1, "all", 0.0, 1000, two.arms[1])
    for field in ("click", "click_delay_hours", "unsub", "unsub_delay_hours"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    other = draw_outcomes(scenario, 1, "all", 0.0, 1000, simulation_streams(8, scenario).arms[1])
    assert not np.array_equal(first.click_delay_hours, other.click_delay_hours)


def test_draws_are_split_invariant() -> None:
    """Two policies that serve arm 1 in different batch sizes see the same recipients."""
    scenario = SCENARIOS["stationary"]
    whole = draw_outcomes(scenario, 1, "all", 0.0, 5000, simulation_streams(3, scenario).arms[1])
    stream = simulation_streams(3, scenario).arms[1]
    parts = [draw_outcomes(scenario, 1, "all", 0.0, n, stream) for n in (1200, 1, 3799)]
    np.testing.assert_array_equal(whole.click, np.concatenate([p.click for p in parts]))
    np.testing.assert_array_equal(
        whole.click_delay_hours, np.concatenate([p.click_delay_hours for p in parts])
    )


def test_streams_are_independent_of_the_number_of_arms_and_of_each_other() -> None:
    five = simulation_streams(11, SCENARIOS["stationary"])
    eight = simulation_streams(11, SCENARIOS["stationary_many"])
    assert five.arms[2].random() == eight.arms[2].random()
    values = {stream.random() for stream in (*five.arms, five.segments, five.policy)}
    assert len(values) == 7


# Tag audience.


def test_tag_audience_rates() -> None:
    audience = tag_audience()
    assert audience.rate(()) == pytest.approx(0.025)
    assert audience.rate(["question"]) == pytest.approx(float(expit(logit(0.025) + 0.3)))
    assert audience.rate(["question"]) == pytest.approx(0.03345, abs=1e-5)
    assert audience.rate(["emoji"]) == pytest.approx(0.02056, abs=1e-5)
    assert audience.rate(["question", "personalized", "length:short"]) == pytest.approx(
        float(expit(logit(0.025) + 0.65))
    )
    # Unknown tags add nothing; a repeated tag counts once.
    assert audience.rate(["question", "question", "seasonal"]) == audience.rate(["question"])


def test_tag_scenario_arms_carry_their_tags() -> None:
    audience = tag_audience(base_rate=0.03)
    scenario = tag_scenario(audience, {"plain": [], "ask": ["question", "emoji"]})
    assert scenario.arm_names == ("plain", "ask")
    assert scenario.arms[1].tags == ("question", "emoji")
    assert scenario.arms[1].rate_click == pytest.approx(float(expit(logit(0.03) + 0.1)))
    late = audience.arm("late", ["personalized"], added_at_hours=24.0)
    assert late.added_at_hours == 24.0
    assert late.rate_click > scenario.arms[0].rate_click


# Invalid inputs.


@pytest.mark.parametrize(
    ("argument", "kwargs"),
    [
        ("name", {"name": ""}),
        ("rate_click", {"rate_click": 0.0}),
        ("rate_click", {"rate_click": 1.0}),
        ("rate_click", {"rate_click": math.nan}),
        ("rate_unsub", {"rate_unsub": -0.01}),
        ("added_at_hours", {"added_at_hours": -1.0}),
        ("removed_at_hours", {"added_at_hours": 5.0, "removed_at_hours": 5.0}),
        ("segment_rates", {"segment_rates": {"a": 1.5}}),
    ],
)
def test_arm_spec_rejects(argument: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=f"^{argument}"):
        ArmSpec(**{"name": "x", "rate_click": 0.02, **kwargs})


@pytest.mark.parametrize(
    ("argument", "kwargs"),
    [
        ("arms", {"arms": ()}),
        ("arms", {"arms": (ArmSpec("a", 0.02), ArmSpec("a", 0.03))}),
        ("segments", {"segments": {"a": 0.5, "b": 0.4}}),
        ("segments", {"segments": {"a": 1.0, "b": 0.0}}),
        ("segments", {"segments": {}}),
        ("horizon_hours", {"horizon_hours": 0.0}),
        ("sends_per_hour", {"sends_per_hour": -5.0}),
        ("primary_metric", {"primary_metric": "open"}),
    ],
)
def test_scenario_rejects(argument: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=f"^{argument}"):
        Scenario(**{"name": "s", "description": "d", "arms": (ArmSpec("a", 0.02),), **kwargs})


@pytest.mark.parametrize(
    ("argument", "kwargs"),
    [("median_hours", {"median_hours": 0.0}), ("sigma", {"sigma": -1.0})],
)
def test_delay_spec_rejects(argument: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=f"^{argument}"):
        DelaySpec(**{"median_hours": 2.0, "sigma": 1.0, **kwargs})


def test_other_rejections() -> None:
    scenario = SCENARIOS["segments"]
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="^segment"):
        draw_outcomes(scenario, 0, "all", 0.0, 10, rng)
    with pytest.raises(ValueError, match="^arm_index"):
        draw_outcomes(scenario, 4, "lapsed", 0.0, 10, rng)
    with pytest.raises(ValueError, match="^n"):
        draw_outcomes(scenario, 0, "lapsed", 0.0, -1, rng)
    with pytest.raises(ValueError, match="^live_arms"):
        best_rate(scenario, "lapsed", 0.0, live_arms=[])
    with pytest.raises(ValueError, match="^probability"):
        scenario.delay.quantile(1.0)
    with pytest.raises(ValueError, match="^rate_click"):
        RateChange(10.0, 0.0)
    with pytest.raises(ValueError, match="^base_rate"):
        tag_audience(base_rate=1.0)


@pytest.mark.parametrize(
    ("argument", "kwargs"),
    [
        ("base_logit", {"base_logit": math.inf, "tag_effects": {}}),
        ("tag_effects", {"base_logit": -3.0, "tag_effects": {"emoji": math.nan}}),
    ],
)
def test_tag_audience_rejects(argument: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=f"^{argument}"):
        TagAudience(**kwargs)
