"""Sampling decisions: the marginal of every arm is pi, the keyed path agrees with the batch."""

import hashlib
import hmac

import numpy as np
import pytest

from bandits import (
    PolicyConfig,
    allocate,
    arm_from_uniforms,
    sample_arms,
    uniforms_from_digest,
)

N = 100_000
SIGMAS = 5.0


def _assert_binomial(counts: np.ndarray, probabilities: np.ndarray, n: int) -> None:
    """Every count within SIGMAS binomial standard deviations of n * p."""
    expected = n * probabilities
    bound = SIGMAS * np.sqrt(n * probabilities * (1 - probabilities)) + 1e-9
    assert np.all(np.abs(counts - expected) <= bound), (counts, expected, bound)


@pytest.fixture(scope="module")
def allocation():
    """Four arms: a leader, two mature losers, a warming arm, and a suspended one."""
    return allocate(
        successes=[120, 100, 90, 10, 150],
        exposures=[3000, 3000, 3000, 200, 3000],
        suspended=np.array([False, False, False, False, True]),
        config=PolicyConfig(),
        rng=np.random.default_rng(11),
    )


def test_sample_arms_frequencies_match_the_allocation(allocation) -> None:
    arms, explored = sample_arms(
        allocation.exploit,
        allocation.eligible,
        allocation.exploration_share,
        N,
        np.random.default_rng(1),
    )

    assert arms.dtype == np.int64
    assert explored.dtype == np.bool_
    assert arms.shape == explored.shape == (N,)
    counts = np.bincount(arms, minlength=5)
    assert counts[4] == 0
    _assert_binomial(counts, allocation.allocation, N)
    _assert_binomial(np.array([explored.sum()]), np.array([0.1]), N)


def test_exploration_is_uniform_over_eligible_arms(allocation) -> None:
    arms, explored = sample_arms(
        allocation.exploit, allocation.eligible, 0.5, N, np.random.default_rng(2)
    )

    explored_arms = arms[explored]
    counts = np.bincount(explored_arms, minlength=5)
    assert counts[4] == 0
    _assert_binomial(counts[:4], np.full(4, 0.25), explored_arms.shape[0])


def test_zero_exploration_never_explores(allocation) -> None:
    arms, explored = sample_arms(
        allocation.exploit, allocation.eligible, 0.0, N, np.random.default_rng(3)
    )

    assert not explored.any()
    _assert_binomial(np.bincount(arms, minlength=5), allocation.exploit, N)


def test_single_eligible_arm_is_always_chosen() -> None:
    exploit = np.array([0.0, 1.0, 0.0])
    eligible = np.array([False, True, False])

    arms, _ = sample_arms(exploit, eligible, 0.3, 1000, np.random.default_rng(4))

    assert np.all(arms == 1)


def test_ineligible_arms_are_never_drawn_even_with_exploit_weight() -> None:
    exploit = np.array([0.5, 0.5])
    eligible = np.array([True, False])

    arms, _ = sample_arms(exploit, eligible, 0.2, 10_000, np.random.default_rng(5))
    assert np.all(arms == 0)
    assert arm_from_uniforms(exploit, eligible, 0.2, 0.9, 0.99) == (0, False)


def test_empty_batch() -> None:
    arms, explored = sample_arms(
        np.array([1.0]), np.array([True]), 0.1, 0, np.random.default_rng(6)
    )

    assert arms.shape == explored.shape == (0,)


def test_arm_from_uniforms_over_a_grid_reproduces_the_allocation(allocation) -> None:
    steps = 300
    grid = (np.arange(steps) + 0.5) / steps
    counts = np.zeros(5)
    explored_count = 0
    for u_explore in grid:
        for u_arm in grid:
            arm, explored = arm_from_uniforms(
                allocation.exploit,
                allocation.eligible,
                allocation.exploration_share,
                float(u_explore),
                float(u_arm),
            )
            counts[arm] += 1
            explored_count += explored

    # Midpoint grids are off by at most one cell per axis.
    np.testing.assert_allclose(counts / steps**2, allocation.allocation, atol=2 / steps)
    assert explored_count / steps**2 == pytest.approx(0.1, abs=1 / steps)
    assert counts[4] == 0


def test_keyed_and_batch_paths_agree_on_the_same_uniforms(allocation) -> None:
    n = 2000
    arms, explored = sample_arms(
        allocation.exploit,
        allocation.eligible,
        allocation.exploration_share,
        n,
        np.random.default_rng(7),
    )
    uniforms = np.random.default_rng(7).random((2, n))

    keyed = [
        arm_from_uniforms(
            allocation.exploit,
            allocation.eligible,
            allocation.exploration_share,
            float(u_explore),
            float(u_arm),
        )
        for u_explore, u_arm in uniforms.T
    ]

    assert [arm for arm, _ in keyed] == arms.tolist()
    assert [flag for _, flag in keyed] == explored.tolist()


def test_largest_uniform_never_picks_a_zero_weight_arm() -> None:
    exploit = np.array([0.3, 0.7, 0.0, 0.0])
    eligible = np.array([True, True, True, False])
    top = 1.0 - 2.0**-53

    assert arm_from_uniforms(exploit, eligible, 0.1, 0.5, top) == (1, False)
    assert arm_from_uniforms(exploit, eligible, 0.1, 0.0, top) == (2, True)
    assert arm_from_uniforms(exploit, eligible, 0.1, 0.0, 0.0) == (0, True)


def test_uniforms_from_digest_known_values() -> None:
    assert uniforms_from_digest(bytes(16)) == (0.0, 0.0)
    assert uniforms_from_digest(b"\xff" * 32) == (1.0 - 2.0**-53, 1.0 - 2.0**-53)
    half = b"\x80" + bytes(7)
    assert uniforms_from_digest(half + bytes(8)) == (0.5, 0.0)
    assert uniforms_from_digest(bytes(8) + half) == (0.0, 0.5)


def test_uniforms_from_hmac_digests_are_uniform_and_uncorrelated() -> None:
    key = b"test-signing-key"
    pairs = np.array(
        [
            uniforms_from_digest(
                hmac.new(key, f"exp:unit-{i}:send".encode(), hashlib.sha256).digest()
            )
            for i in range(20_000)
        ]
    )

    counts = np.histogram(pairs[:, 0], bins=10, range=(0, 1))[0]
    _assert_binomial(counts, np.full(10, 0.1), 20_000)
    # Correlation of independent uniforms has sd 1/sqrt(n).
    assert abs(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]) < SIGMAS / np.sqrt(20_000)


def test_prepared_sampler_matches_arm_from_uniforms_exactly():
    from bandits.sampling import PreparedSampler

    rng = np.random.default_rng(20261121)
    for _ in range(300):
        k = int(rng.integers(1, 12))
        exploit = rng.random(k)
        eligible = rng.random(k) < 0.8
        eligible[int(rng.integers(k))] = True
        epsilon = float(rng.choice([0.0, 0.05, 0.1, 0.5]))
        sampler = PreparedSampler.prepare(exploit, eligible, epsilon)
        for u_explore, u_arm in rng.random((50, 2)).tolist():
            expected = arm_from_uniforms(exploit, eligible, epsilon, u_explore, u_arm)
            assert sampler.from_uniforms(u_explore, u_arm) == expected
