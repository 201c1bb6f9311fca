"""Beta posteriors and the pooled prior: exact parameters and reference quantiles."""

import numpy as np
import pytest
from scipy import stats

from bandits import BetaPosterior, beta_posterior, pooled_prior


def test_posterior_parameters_add_counts_to_the_prior() -> None:
    posterior = beta_posterior([3, 0, 10], [10, 0, 10], 1.0, 1.0)

    np.testing.assert_array_equal(posterior.alpha, [4.0, 1.0, 11.0])
    np.testing.assert_array_equal(posterior.beta, [8.0, 1.0, 1.0])
    np.testing.assert_allclose(posterior.mean, [4 / 12, 0.5, 11 / 12])


def test_effective_float_counts_are_accepted() -> None:
    posterior = beta_posterior([2.5], [40.25], 0.07, 1.93)

    np.testing.assert_allclose(posterior.alpha, [2.57])
    np.testing.assert_allclose(posterior.beta, [1.93 + 37.75])


def test_successes_are_clipped_to_exposures() -> None:
    # Delay correction can leave effective exposures below the successes seen.
    posterior = beta_posterior([12.0, 3.0], [10.0, 5.0], 1.0, 1.0)

    np.testing.assert_array_equal(posterior.alpha, [11.0, 4.0])
    np.testing.assert_array_equal(posterior.beta, [1.0, 3.0])


def test_per_arm_priors() -> None:
    posterior = beta_posterior([1, 2], [10, 10], [0.5, 2.0], [1.5, 3.0])

    np.testing.assert_array_equal(posterior.alpha, [1.5, 4.0])
    np.testing.assert_array_equal(posterior.beta, [10.5, 11.0])


def test_credible_interval_matches_reference_quantiles() -> None:
    posterior = beta_posterior([50, 5], [1000, 100], 1.0, 1.0)

    low, high = posterior.credible_interval(0.95)

    np.testing.assert_allclose(low, [0.03816683, 0.02211057], atol=5e-8)
    np.testing.assert_allclose(high, [0.06532569, 0.11175506], atol=5e-8)
    np.testing.assert_allclose(low, stats.beta.ppf(0.025, [51, 6], [951, 96]))
    assert np.all(low < posterior.mean)
    assert np.all(posterior.mean < high)


def test_narrower_level_gives_a_narrower_interval() -> None:
    posterior = beta_posterior([50], [1000], 1.0, 1.0)

    low_95, high_95 = posterior.credible_interval(0.95)
    low_50, high_50 = posterior.credible_interval(0.5)

    assert low_95[0] < low_50[0] < high_50[0] < high_95[0]


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 1.5])
def test_credible_interval_level_must_be_a_probability(level: float) -> None:
    posterior = BetaPosterior(alpha=np.array([1.0]), beta=np.array([1.0]))

    with pytest.raises(ValueError, match="level"):
        posterior.credible_interval(level)


def test_posterior_arrays_are_read_only() -> None:
    posterior = beta_posterior([1], [10], 1.0, 1.0)

    with pytest.raises(ValueError, match="read-only"):
        posterior.alpha[0] = 5.0


def test_pooled_prior_without_data_is_uniform_at_strength_two() -> None:
    assert pooled_prior([0, 0], [0, 0], 2.0) == pytest.approx((1.0, 1.0))
    assert pooled_prior([], [], 4.0) == pytest.approx((2.0, 2.0))


def test_pooled_prior_is_centred_on_the_pooled_rate() -> None:
    alpha, beta = pooled_prior([500, 200], [10_000, 10_000], 2.0)

    assert alpha + beta == pytest.approx(2.0)
    assert alpha / (alpha + beta) == pytest.approx(700.5 / 20_001)
    assert alpha == pytest.approx(0.07004650, abs=1e-8)


def test_pooled_prior_without_successes_stays_positive() -> None:
    alpha, beta = pooled_prior([0, 0], [5_000, 5_000], 2.0)

    assert 0 < alpha < 1e-3
    assert beta == pytest.approx(2.0 - alpha)
