"""Guardrail checks: leave-one-out references, sample gates, and validity under repeated looks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bandits.guardrails import (
    GuardrailResult,
    always_valid_probability,
    check_guardrails,
    combine_guardrails,
    probability_exceeds,
)

ALL = np.ones(4, dtype=bool)


def check(
    events: list[float], exposures: list[float], seed: int = 0, **kwargs: object
) -> GuardrailResult:
    eligible = kwargs.pop("eligible", np.ones(len(events), dtype=bool))
    return check_guardrails(
        np.array(events, dtype=float),
        np.array(exposures, dtype=float),
        eligible=eligible,  # type: ignore[arg-type]
        rng=np.random.default_rng(seed),
        **kwargs,  # type: ignore[arg-type]
    )


def test_trap_arm_with_twice_the_unsubscribes_is_flagged_once_it_has_the_sample() -> None:
    # 0.6% against 0.3%: at 2,000 exposures each the evidence is not there yet...
    early = check([12, 6, 6, 6], [2_000, 2_000, 2_000, 2_000])
    assert not early.breached.any()
    # ...nor quite at 10,000 (P = 0.99729 against a bar of 0.99880)...
    close = check([60, 30, 30, 30], [10_000, 10_000, 10_000, 10_000])
    assert close.probability_exceeds[0] == pytest.approx(0.99729, abs=5e-6)
    assert not close.breached.any()
    # ...and at 15,000 each it is (P = 0.99967).
    later = check([90, 45, 45, 45], [15_000, 15_000, 15_000, 15_000])
    assert later.breached.tolist() == [True, False, False, False]
    assert later.reference_events[0] == 135
    assert later.reference_exposures[0] == 45_000
    assert later.rate[0] == pytest.approx(0.006)
    assert later.reference_rate[0] == pytest.approx(0.003)
    assert later.probability_exceeds[0] > later.required_probability[0] >= 0.95


def test_expected_numbers_for_a_fixed_seed() -> None:
    result = check([90, 45, 45, 45], [15_000, 15_000, 15_000, 15_000], seed=7)
    # Arm 0 is near its bar, so its probability is exact (quadrature); the others are Monte
    # Carlo estimates from the seeded generator.
    np.testing.assert_allclose(
        result.probability_exceeds, [0.99967, 0.00075, 0.00075, 0.001], atol=5e-6
    )
    np.testing.assert_allclose(
        result.required_probability, [0.99886, 0.9988, 0.9988, 0.9988], atol=5e-6
    )


def test_arm_ten_percent_worse_is_not_flagged_with_a_large_sample() -> None:
    result = check([1_100, 1_000, 1_000, 1_000], [200_000, 200_000, 200_000, 200_000])
    assert not result.breached.any()
    assert result.probability_exceeds[0] < 0.01


def test_below_minimum_sample_never_flagged() -> None:
    # 20% unsubscribes, but only 499 exposures.
    few_exposures = check([100, 30, 30, 30], [499, 10_000, 10_000, 10_000])
    assert not few_exposures.breached[0]
    assert few_exposures.probability_exceeds[0] > 0.999
    # Four events are below min_events even if the reference has none at all.
    few_events = check([4, 0, 0, 0], [500, 100_000, 100_000, 100_000])
    assert not few_events.breached[0]
    # The gate can look at raw counts while rates use delay-corrected exposures.
    corrected = check(
        [90, 45, 45, 45], [495, 15_000, 15_000, 15_000], raw_exposures=[990, 15_000, 15_000, 15_000]
    )
    assert corrected.breached[0]


@settings(max_examples=50, deadline=None)
@given(
    exposures=st.integers(0, 499),
    events=st.integers(0, 499),
    others=st.lists(st.integers(0, 50), min_size=1, max_size=5),
)
def test_property_below_min_exposures_never_breached(
    exposures: int, events: int, others: list[int]
) -> None:
    events = min(events, exposures)
    result = check([events, *others], [exposures, *[100_000] * len(others)], draws=500)
    assert not result.breached[0]


def test_ineligible_arms_are_neither_reference_nor_flagged() -> None:
    eligible = np.array([True, True, False, True])
    # Arm 2 is already suspended with a huge rate: it must not mask arm 0, nor be re-flagged.
    result = check([90, 45, 5_000, 45], [15_000, 15_000, 15_000, 15_000], eligible=eligible)
    assert result.reference_exposures.tolist() == [30_000, 30_000, 45_000, 30_000]
    assert result.breached.tolist() == [True, False, False, False]
    assert result.probability_exceeds[2] == pytest.approx(1.0)


def test_no_reference_without_another_eligible_arm() -> None:
    result = check([60, 30], [10_000, 10_000], eligible=np.array([True, False]))
    assert np.isnan(result.probability_exceeds[0])
    assert np.isnan(result.reference_rate[0])
    assert not result.breached.any()


def test_evidence_is_json_serialisable() -> None:
    result = check([90, 45, 45, 45], [15_000, 15_000, 15_000, 15_000], looks=12)
    evidence = json.loads(json.dumps(result.evidence(0)))
    assert evidence["breached"] is True
    assert evidence["looks"] == 12
    assert evidence["reference_exposures"] == 45_000


def test_always_valid_bar_is_stricter_than_one_look_and_grows_slowly() -> None:
    variances = np.array([1.0, 0.1, 0.01, 0.001, 0.0001])
    bar = always_valid_probability(variances, 0.05, 0.5)
    assert np.all(bar > 0.95)
    # In z units: 5.6 with almost no information, then 3.2, 3.1, 3.4, 3.7: growing like
    # sqrt(log n), against 1.645 for a single look.
    z = stats.norm.ppf(bar)
    np.testing.assert_allclose(z, [5.57432, 3.18464, 3.10154, 3.40044, 3.71772], atol=5e-5)


@pytest.mark.parametrize(
    "posteriors",
    [
        (90.5, 14_910.5, 135.5, 44_865.5),
        (0.5, 500.0, 0.5, 1_000.0),
        (1_000.5, 99_000.0, 10.5, 1_000.0),
        (10.5, 1_000.0, 1_000.5, 100_000.0),
    ],
)
def test_quadrature_matches_monte_carlo(posteriors: tuple[float, float, float, float]) -> None:
    arm_alpha, arm_beta, ref_alpha, ref_beta = posteriors
    rng = np.random.default_rng(11)
    draws = 2_000_000
    simulated = np.mean(
        rng.beta(arm_alpha, arm_beta, draws) > 1.25 * rng.beta(ref_alpha, ref_beta, draws)
    )
    exact = probability_exceeds(arm_alpha, arm_beta, ref_alpha, ref_beta, 1.25)
    assert exact == pytest.approx(simulated, abs=4 * np.sqrt(exact * (1 - exact) / draws) + 1e-6)


def test_combine_guardrails_names_the_metrics() -> None:
    unsubscribe = check([90, 45, 45, 45], [15_000, 15_000, 15_000, 15_000])
    complaint = check([5, 50, 5, 5], [15_000, 15_000, 15_000, 15_000])
    combined = combine_guardrails({"unsubscribe": unsubscribe, "complaint": complaint})
    assert combined.breached.tolist() == [True, True, False, False]
    assert combined.breached_metrics == (("unsubscribe",), ("complaint",), (), ())


def sequential_run(rates: np.ndarray, seed: int, looks: int, per_look: int) -> tuple[bool, bool]:
    """Whether arm 0 is ever flagged (by the test, and by a naive 0.95 bar at every look)."""
    rng = np.random.default_rng(seed)
    events = np.zeros(rates.size)
    exposures = np.zeros(rates.size)
    flagged = naive = False
    for look in range(1, looks + 1):
        exposures += per_look
        events += rng.binomial(per_look, rates)
        result = check_guardrails(
            events,
            exposures,
            eligible=np.ones(rates.size, dtype=bool),
            looks=look,
            rng=rng,
            draws=1000,
        )
        enough = (exposures[0] >= 500) and (events[0] >= 5)
        flagged |= bool(result.breached[0])
        naive |= enough and bool(result.probability_exceeds[0] > 0.95)
    return flagged, naive


@pytest.mark.slow
def test_false_suspension_under_many_looks_stays_below_five_percent() -> None:
    # Arm 0 exactly at the tolerance (+25%, the least favourable null), 40 looks of 500 exposures
    # per arm up to 20,000 each, 150 seeded runs.
    base = 0.005
    runs = [
        sequential_run(np.array([base * 1.25, base, base, base]), seed, 40, 500)
        for seed in range(150)
    ]
    flagged = np.mean([run[0] for run in runs])
    naive = np.mean([run[1] for run in runs])
    assert flagged <= 0.05  # observed: 0.007 (1 run in 150)
    assert naive >= 0.15  # a fixed 0.95 bar at every look; observed: 0.287


def test_false_suspension_of_equal_arms_under_many_looks() -> None:
    base = 0.005
    runs = [sequential_run(np.full(4, base), seed, 20, 1_000) for seed in range(60)]
    assert np.mean([run[0] for run in runs]) <= 0.05  # observed: 0.0 (naive bar: 0.033)


def test_trap_is_caught_sequentially() -> None:
    base = 0.005
    runs = [
        sequential_run(np.array([2 * base, base, base, base]), seed, 20, 1_000)
        for seed in range(40)
    ]
    assert np.mean([run[0] for run in runs]) >= 0.9  # observed: 0.95 by 20,000 exposures


# Invalid inputs.


@pytest.mark.parametrize(
    ("events", "exposures", "kwargs", "message"),
    [
        ([1, 2], [10, 10, 10], {}, "one shape"),
        ([[1]], [[10]], {}, "1-D"),
        ([-1, 2], [10, 10], {}, "non-negative"),
        ([11, 2], [10, 10], {}, "more events"),
        ([1, 2], [10, float("nan")], {}, "finite"),
        ([1, 2], [10, 10], {"eligible": np.array([1, 1])}, "boolean"),
        ([1, 2], [10, 10], {"eligible": np.array([True])}, "boolean"),
        ([1, 2], [10, 10], {"tolerance": -0.1}, "tolerance"),
        ([1, 2], [10, 10], {"min_exposures": 0}, "at least 1"),
        ([1, 2], [10, 10], {"threshold": 1.0}, "threshold"),
        ([1, 2], [10, 10], {"looks": 0}, "looks"),
        ([1, 2], [10, 10], {"draws": 10}, "draws"),
        ([1, 2], [10, 10], {"raw_exposures": [10]}, "raw_exposures"),
        ([1, 2], [10, 10], {"mixture_scale": 0.0}, "mixture_scale"),
    ],
)
def test_check_rejects_invalid_inputs(
    events: list[float], exposures: list[float], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check(events, exposures, **kwargs)  # type: ignore[arg-type]


def test_combine_rejects_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="at least one"):
        combine_guardrails({})
    with pytest.raises(ValueError, match="same arms"):
        combine_guardrails({"a": check([1, 1], [10, 10]), "b": check([1, 1, 1], [10, 10, 10])})
