"""Off-policy estimators: exact values, coverage on adaptive synthetic logs, support, bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from bandits.offpolicy import (
    bootstrap_interval,
    effective_sample_size,
    ips,
    lift_over_even_split,
    off_policy_estimate,
    snips,
)
from simulation.baselines import thompson_allocation

FloatArray = npt.NDArray[np.float64]

# Rates well above email's so that 2,000 decisions carry enough successes
# for a coverage check that runs in a few seconds; the estimators do not
# care about the scale.
RATES = np.array([0.10, 0.15, 0.22, 0.12])
K = RATES.size


@dataclass(frozen=True)
class Log:
    arm: npt.NDArray[np.int64]
    propensity: FloatArray
    reward: FloatArray
    allocation: FloatArray  # the logging policy's full distribution per decision


def adaptive_log(seed: int, batches: int = 10, batch: int = 200, epsilon: float = 0.2) -> Log:
    """Decisions from a Thompson policy with an exploration share, refreshed per batch."""
    rng = np.random.default_rng(seed)
    successes, exposures = np.zeros(K), np.zeros(K)
    arms, propensities, rewards, allocations = [], [], [], []
    for _ in range(batches):
        pi = epsilon / K + (1 - epsilon) * thompson_allocation(successes, exposures, rng, 200)
        arm = rng.choice(K, size=batch, p=pi)
        reward = (rng.random(batch) < RATES[arm]).astype(np.float64)
        np.add.at(successes, arm, reward)
        np.add.at(exposures, arm, 1.0)
        arms.append(arm)
        propensities.append(pi[arm])
        rewards.append(reward)
        allocations.append(np.tile(pi, (batch, 1)))
    return Log(
        np.concatenate(arms),
        np.concatenate(propensities),
        np.concatenate(rewards),
        np.concatenate(allocations),
    )


TARGETS = {
    "uniform": np.full(K, 1.0 / K),
    "best arm": np.eye(K)[2],
    "losing arm": np.eye(K)[3],
    "other policy": np.array([0.4, 0.3, 0.2, 0.1]),
}


def test_hand_computed_values() -> None:
    rewards = [1.0, 0.0, 1.0, 0.0]
    logged = [0.5, 0.25, 0.5, 0.25]
    target = [0.25, 0.25, 0.25, 0.25]  # weights 0.5, 1, 0.5, 1
    assert ips(rewards, logged, target) == pytest.approx(0.25)
    assert snips(rewards, logged, target) == pytest.approx(1.0 / 3.0)
    assert effective_sample_size(logged, target) == pytest.approx(9.0 / 2.5)


def test_on_policy_target_gives_the_mean_reward() -> None:
    log = adaptive_log(1)
    on_policy = ips(log.reward, log.propensity, log.propensity)
    assert on_policy == pytest.approx(log.reward.mean())
    assert snips(log.reward, log.propensity, log.propensity) == pytest.approx(on_policy)
    assert effective_sample_size(log.propensity, log.propensity) == pytest.approx(2000.0)


def test_snips_is_nan_when_the_target_never_weighs_a_logged_decision() -> None:
    assert math.isnan(snips([1.0, 0.0], [0.5, 0.5], [0.0, 0.0]))
    assert ips([1.0, 0.0], [0.5, 0.5], [0.0, 0.0]) == 0.0


def test_fixed_seed_estimate() -> None:
    log = adaptive_log(7)
    q = TARGETS["uniform"][log.arm]
    result = off_policy_estimate(
        snips, log.reward, log.propensity, q, rng=np.random.default_rng(7), n_boot=500
    )
    assert result.support
    assert result.n == 2000
    assert result.level == 0.90
    assert result.value == pytest.approx(snips(log.reward, log.propensity, q))
    assert result.ci_low < result.value < result.ci_high
    assert result.ci_high - result.ci_low == pytest.approx(0.0388, abs=0.003)
    # Thompson starved the losing arms, so uniform has a third of the decisions.
    assert result.effective_sample_size == pytest.approx(693.17827, abs=1e-4)
    again = off_policy_estimate(
        snips, log.reward, log.propensity, q, rng=np.random.default_rng(7), n_boot=500
    )
    assert again == result


@pytest.mark.slow
@pytest.mark.parametrize("estimator", [ips, snips])
def test_coverage_over_seeds(estimator: Callable[..., float]) -> None:
    """90% intervals cover the true value in about 90% of 100 adaptive logs.

    Measured at these seeds: 89-91 for uniform, 95 for the best arm, 89 for
    the other policy, but 85-87 for the losing arm, which Thompson holds at
    its exploration floor (5%): resampling decisions as if independent is a
    little optimistic for an arm whose few exposures came when the policy
    had already turned away from it. Hence the looser bound per target.
    """
    seeds = range(100)
    covered = dict.fromkeys(TARGETS, 0)
    for seed in seeds:
        log = adaptive_log(seed)
        rng = np.random.default_rng(10_000 + seed)
        for name, target in TARGETS.items():
            low, high = bootstrap_interval(
                estimator, log.reward, log.propensity, target[log.arm], rng=rng, n_boot=300
            )
            covered[name] += low <= float(target @ RATES) <= high
    coverage = {name: hits / len(seeds) for name, hits in covered.items()}
    assert all(rate >= 0.82 for rate in coverage.values()), coverage
    assert sum(coverage.values()) / len(coverage) >= 0.87, coverage


def test_wider_level_gives_wider_interval() -> None:
    log = adaptive_log(3)
    q = TARGETS["other policy"][log.arm]
    narrow = bootstrap_interval(
        ips, log.reward, log.propensity, q, rng=np.random.default_rng(0), level=0.90
    )
    wide = bootstrap_interval(
        ips, log.reward, log.propensity, q, rng=np.random.default_rng(0), level=0.95
    )
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_custom_estimator_is_resampled_one_call_at_a_time() -> None:
    log = adaptive_log(4)
    q = TARGETS["uniform"][log.arm]
    calls = 0

    def clipped_ips(rewards: Any, logged: Any, target: Any) -> float:
        nonlocal calls
        calls += 1
        return float(np.mean(np.asarray(rewards) * np.minimum(np.asarray(target) / logged, 5.0)))

    low, high = bootstrap_interval(
        clipped_ips, log.reward, log.propensity, q, rng=np.random.default_rng(0), n_boot=50
    )
    assert calls == 50
    vectorised = bootstrap_interval(
        ips, log.reward, log.propensity, q, rng=np.random.default_rng(0), n_boot=50
    )
    # Weights here are at most 1.25, so the clip never binds: same estimator,
    # different resampling path, intervals of the same size.
    assert high - low == pytest.approx(vectorised[1] - vectorised[0], rel=0.5)


@pytest.mark.slow
def test_lift_recovers_the_gain_over_uniform() -> None:
    seeds = range(100)
    covered_difference = covered_uniform = 0
    for seed in seeds:
        log = adaptive_log(seed)
        lift = lift_over_even_split(
            log.reward, log.propensity, 1.0 / K, np.random.default_rng(seed), n_boot=300
        )
        # What the logging policy was expected to earn on these decisions,
        # against what uniform earns.
        true_difference = float((log.allocation @ RATES).mean() - RATES.mean())
        covered_difference += lift.difference.low <= true_difference <= lift.difference.high
        covered_uniform += lift.uniform.low <= RATES.mean() <= lift.uniform.high
    assert covered_difference >= 85
    assert covered_uniform >= 85


def test_lift_figures_are_consistent() -> None:
    log = adaptive_log(11)
    lift = lift_over_even_split(
        log.reward, log.propensity, np.full(log.reward.size, 0.25), np.random.default_rng(1)
    )
    assert lift.support
    assert lift.n == 2000
    assert lift.policy.value == pytest.approx(log.reward.mean())
    assert lift.uniform.value == pytest.approx(
        snips(log.reward, log.propensity, np.full(2000, 0.25))
    )
    assert lift.difference.value == pytest.approx(lift.policy.value - lift.uniform.value)
    assert lift.relative.value == pytest.approx(lift.difference.value / lift.uniform.value)
    assert lift.successes_gained.value == pytest.approx(2000 * lift.difference.value)
    assert lift.successes_gained.low == pytest.approx(2000 * lift.difference.low)
    assert lift.successes_gained.high == pytest.approx(2000 * lift.difference.high)
    # A Thompson policy on these rates beats an even split.
    assert lift.difference.low > 0.0
    expected_relative = (log.allocation @ RATES).mean() / RATES.mean() - 1.0  # 0.305
    assert lift.relative.low < expected_relative < lift.relative.high
    assert lift.relative.value == pytest.approx(0.37823, abs=1e-5)


def test_no_support_when_the_target_weighs_arms_the_log_never_offered() -> None:
    log = adaptive_log(5)
    rng = np.random.default_rng(0)
    # Uniform over five arms when the log only ever offered four.
    result = off_policy_estimate(
        ips,
        log.reward,
        log.propensity,
        np.full(log.reward.size, 0.2),
        rng=rng,
        target_mass_on_logged_arms=0.8,
    )
    assert not result.support
    assert math.isnan(result.value)
    assert math.isnan(result.ci_low)
    assert math.isnan(result.ci_high)
    assert result.n == 2000


def test_no_support_for_an_arm_added_midway() -> None:
    log = adaptive_log(5)
    # A fixed arm the logging policy could only pick in the second half.
    mass = np.r_[np.zeros(1000), np.ones(1000)]
    target = np.where(log.arm == 2, 1.0, 0.0) * mass
    result = off_policy_estimate(
        snips,
        log.reward,
        log.propensity,
        target,
        rng=np.random.default_rng(0),
        target_mass_on_logged_arms=mass,
    )
    assert not result.support
    # Restricted to the decisions where it could be chosen, it is answerable.
    half = slice(1000, None)
    restricted = off_policy_estimate(
        snips,
        log.reward[half],
        log.propensity[half],
        target[half],
        rng=np.random.default_rng(0),
        target_mass_on_logged_arms=mass[half],
    )
    assert restricted.support
    assert restricted.ci_low < RATES[2] < restricted.ci_high


def test_tolerance_admits_a_sliver_of_missing_mass() -> None:
    log = adaptive_log(5)
    q = np.full(log.reward.size, 0.25)
    kwargs: dict[str, Any] = {"rng": np.random.default_rng(0), "n_boot": 50}
    assert off_policy_estimate(
        ips,
        log.reward,
        log.propensity,
        q,
        target_mass_on_logged_arms=0.995,
        support_tolerance=0.01,
        **kwargs,
    ).support
    assert not off_policy_estimate(
        ips, log.reward, log.propensity, q, target_mass_on_logged_arms=0.995, **kwargs
    ).support


def test_no_support_when_the_target_never_weighs_a_logged_decision() -> None:
    result = off_policy_estimate(
        snips, [1.0, 0.0, 1.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0], rng=np.random.default_rng(0)
    )
    assert not result.support
    assert math.isnan(result.value)
    assert result.effective_sample_size == 0.0


def test_empty_log_has_no_support() -> None:
    result = off_policy_estimate(snips, [], [], [], rng=np.random.default_rng(0))
    assert not result.support
    assert result.n == 0
    lift = lift_over_even_split([], [], 0.25, np.random.default_rng(0))
    assert not lift.support
    assert math.isnan(lift.difference.value)


def test_lift_without_support() -> None:
    lift = lift_over_even_split(
        [1.0, 0.0], [0.5, 0.5], 0.25, np.random.default_rng(0), uniform_mass_on_logged_arms=0.5
    )
    assert not lift.support
    assert lift.policy.value == 0.5
    assert math.isnan(lift.uniform.value)


# Invalid inputs: each raises ValueError naming the argument.

GOOD: dict[str, Any] = {
    "rewards": [1.0, 0.0, 1.0],
    "logged_propensity": [0.5, 0.25, 1.0],
    "target_probability": [0.25, 0.25, 0.25],
}
BAD_INPUTS = [
    ("rewards", [1.0, math.nan, 0.0]),
    ("rewards", [[1.0, 0.0, 1.0]]),
    ("logged_propensity", [0.5, 0.25]),
    ("logged_propensity", [0.5, 0.0, 1.0]),
    ("logged_propensity", [0.5, -0.1, 1.0]),
    ("logged_propensity", [0.5, 1.5, 1.0]),
    ("logged_propensity", [0.5, math.nan, 1.0]),
    ("target_probability", [0.25, 0.25]),
    ("target_probability", [0.25, 1.25, 0.25]),
    ("target_probability", [0.25, -0.25, 0.25]),
    ("target_probability", [0.25, math.inf, 0.25]),
]


@pytest.mark.parametrize(("argument", "value"), BAD_INPUTS)
@pytest.mark.parametrize("function", [ips, snips])
def test_estimators_reject(function: Callable[..., float], argument: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{argument}"):
        function(**{**GOOD, argument: value})


@pytest.mark.parametrize(("argument", "value"), BAD_INPUTS)
def test_estimate_and_interval_reject(argument: str, value: Any) -> None:
    arguments = {**GOOD, argument: value}
    with pytest.raises(ValueError, match=f"^{argument}"):
        off_policy_estimate(ips, **arguments, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=f"^{argument}"):
        bootstrap_interval(ips, **arguments, rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("rewards", [1.0, math.nan, 0.0]),
        ("logged_propensity", [0.5, 0.0, 1.0]),
        ("logged_propensity", [0.5, 0.25]),
        ("uniform_probability", [0.25, 0.25]),
        ("uniform_probability", 1.5),
        ("n_boot", 1),
        ("level", 1.0),
        ("uniform_mass_on_logged_arms", 1.2),
        ("uniform_mass_on_logged_arms", [1.0, 1.0]),
        ("support_tolerance", -0.1),
    ],
)
def test_lift_rejects(argument: str, value: Any) -> None:
    arguments: dict[str, Any] = {
        "rewards": [1.0, 0.0, 1.0],
        "logged_propensity": [0.5, 0.25, 1.0],
        "uniform_probability": 0.25,
        "rng": np.random.default_rng(0),
        argument: value,
    }
    with pytest.raises(ValueError, match=f"^{argument}"):
        lift_over_even_split(**arguments)


@pytest.mark.parametrize(
    ("argument", "value"),
    [("n_boot", 0), ("n_boot", 2.5), ("n_boot", True), ("level", 0.0), ("level", 1.5)],
)
def test_bootstrap_settings_rejected(argument: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{argument}"):
        bootstrap_interval(ips, **GOOD, rng=np.random.default_rng(0), **{argument: value})


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("target_mass_on_logged_arms", 1.5),
        ("target_mass_on_logged_arms", [1.0, 1.0]),
        ("target_mass_on_logged_arms", [1.0, math.nan, 1.0]),
        ("support_tolerance", 1.0),
    ],
)
def test_support_arguments_rejected(argument: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{argument}"):
        off_policy_estimate(ips, **GOOD, rng=np.random.default_rng(0), **{argument: value})


def test_rng_must_be_a_generator() -> None:
    with pytest.raises(TypeError, match="^rng"):
        bootstrap_interval(ips, **GOOD, rng=np.random.RandomState(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^rng"):
        off_policy_estimate(ips, **GOOD, rng=0)  # type: ignore[arg-type]


def test_effective_sample_size_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="^target_probability"):
        effective_sample_size([0.5, 0.5], [0.5])
    with pytest.raises(ValueError, match="^logged_propensity"):
        effective_sample_size([0.5, 0.0], [0.5, 0.5])


def test_estimators_need_a_decision() -> None:
    with pytest.raises(ValueError, match="^rewards"):
        ips([], [], [])
    with pytest.raises(ValueError, match="^rewards"):
        bootstrap_interval(snips, [], [], [], rng=np.random.default_rng(0))


def test_snips_interval_is_nan_when_most_resamples_miss_the_target() -> None:
    # Only one of 100 decisions has target weight: about 37% of resamples
    # miss it and have no SNIPS value, so no interval is claimed.
    rewards, logged = np.ones(100), np.full(100, 0.5)
    target = np.r_[1.0, np.zeros(99)]
    low, high = bootstrap_interval(snips, rewards, logged, target, rng=np.random.default_rng(0))
    assert (low, high) == (1.0, 1.0)
    target = np.zeros(100)
    low, high = bootstrap_interval(snips, rewards, logged, target, rng=np.random.default_rng(0))
    assert math.isnan(low)
    assert math.isnan(high)
