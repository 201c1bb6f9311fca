"""Baseline policies: allocations sum to one and behave as their textbook versions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import integrate, stats

from simulation.baselines import (
    epsilon_greedy_allocation,
    thompson_allocation,
    uniform_allocation,
)


@pytest.mark.parametrize("k", [1, 2, 5, 8])
def test_uniform(k: int) -> None:
    allocation = uniform_allocation(k)
    assert allocation.shape == (k,)
    assert allocation.sum() == pytest.approx(1.0)
    assert np.all(allocation == 1.0 / k)


def test_epsilon_greedy_gives_the_leader_its_share() -> None:
    allocation = epsilon_greedy_allocation([10, 30, 20, 5], [1000, 1000, 1000, 1000], 0.1)
    assert allocation == pytest.approx([0.025, 0.925, 0.025, 0.025])
    assert allocation.sum() == pytest.approx(1.0)


def test_epsilon_greedy_uses_rates_not_counts() -> None:
    # arm 0 has more successes, arm 1 the better rate.
    allocation = epsilon_greedy_allocation([40, 15], [2000, 500], epsilon=0.2)
    assert allocation == pytest.approx([0.1, 0.9])


def test_epsilon_greedy_splits_ties_and_starts_uniform() -> None:
    assert epsilon_greedy_allocation([0, 0, 0], [0, 0, 0]) == pytest.approx([1 / 3] * 3)
    tied = epsilon_greedy_allocation([5, 5, 1], [100, 100, 100], epsilon=0.3)
    assert tied == pytest.approx([0.1 + 0.35, 0.1 + 0.35, 0.1])


def test_epsilon_greedy_new_arm_gets_only_exploration() -> None:
    allocation = epsilon_greedy_allocation([20, 30, 0], [1000, 1000, 0], epsilon=0.1)
    assert allocation[2] == pytest.approx(0.1 / 3)


def test_epsilon_greedy_extremes() -> None:
    assert epsilon_greedy_allocation([1, 2], [10, 10], epsilon=0.0) == pytest.approx([0, 1])
    assert epsilon_greedy_allocation([1, 2], [10, 10], epsilon=1.0) == pytest.approx([0.5, 0.5])


def test_thompson_two_arms_matches_the_exact_probability() -> None:
    successes, exposures = np.array([30, 42]), np.array([1000, 1100])
    a, b = 1 + successes, 1 + exposures - successes
    # P(X1 > X0) = integral of f1(x) * F0(x) dx.
    exact, _ = integrate.quad(
        lambda x: stats.beta.pdf(x, a[1], b[1]) * stats.beta.cdf(x, a[0], b[0]), 0, 0.15
    )
    draws = 40_000
    allocation = thompson_allocation(successes, exposures, np.random.default_rng(0), draws)
    assert exact == pytest.approx(0.84543, abs=1e-5)  # normal approximation: 0.844
    assert allocation[1] == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / draws))
    assert allocation.sum() == pytest.approx(1.0)


def test_thompson_fixed_seed() -> None:
    allocation = thompson_allocation([12, 20, 31, 25], [1000] * 4, np.random.default_rng(42))
    assert allocation.sum() == pytest.approx(1.0)
    assert allocation == pytest.approx([0.00025, 0.0445, 0.76225, 0.193], abs=1e-12)
    again = thompson_allocation([12, 20, 31, 25], [1000] * 4, np.random.default_rng(42))
    assert np.array_equal(allocation, again)


def test_thompson_has_no_exploration_floor() -> None:
    allocation = thompson_allocation([10, 100], [1000, 1000], np.random.default_rng(0))
    assert allocation == pytest.approx([0.0, 1.0])


def test_thompson_without_data_is_even() -> None:
    draws = 20_000
    allocation = thompson_allocation([0] * 4, [0] * 4, np.random.default_rng(1), draws)
    bound = 4 * math.sqrt(0.25 * 0.75 / draws)
    assert allocation == pytest.approx([0.25] * 4, abs=bound)


def test_thompson_accepts_fractional_delay_corrected_exposures() -> None:
    allocation = thompson_allocation([2.0, 3.0], [40.5, 60.25], np.random.default_rng(0))
    assert allocation.sum() == pytest.approx(1.0)


# Invalid inputs.


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_uniform_rejects(k: Any) -> None:
    with pytest.raises(ValueError, match="^k"):
        uniform_allocation(k)


BAD_COUNTS = [
    ("successes", [], []),
    ("successes", [[1, 2]], [[3, 4]]),
    ("exposures", [1, 2], [3]),
    ("successes", [-1, 2], [3, 4]),
    ("successes", [math.nan, 2], [3, 4]),
    ("exposures", [1, 2], [3, -4]),
    ("exposures", [1, 2], [3, math.inf]),
    ("successes", [5, 2], [3, 4]),
]


@pytest.mark.parametrize(("argument", "successes", "exposures"), BAD_COUNTS)
def test_counts_rejected(argument: str, successes: Any, exposures: Any) -> None:
    with pytest.raises(ValueError, match=f"^{argument}"):
        epsilon_greedy_allocation(successes, exposures)
    with pytest.raises(ValueError, match=f"^{argument}"):
        thompson_allocation(successes, exposures, np.random.default_rng(0))


@pytest.mark.parametrize("epsilon", [-0.1, 1.1, math.nan])
def test_epsilon_rejected(epsilon: float) -> None:
    with pytest.raises(ValueError, match="^epsilon"):
        epsilon_greedy_allocation([1, 2], [10, 10], epsilon)


@pytest.mark.parametrize("draws", [0, 10.5, False])
def test_draws_rejected(draws: Any) -> None:
    with pytest.raises(ValueError, match="^draws"):
        thompson_allocation([1, 2], [10, 10], np.random.default_rng(0), draws)


def test_thompson_needs_a_generator() -> None:
    with pytest.raises(TypeError, match="^rng"):
        thompson_allocation([1, 2], [10, 10], 0)  # type: ignore[arg-type]
