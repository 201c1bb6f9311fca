"""F of a cohort with spread-out ages: two-point quadrature at mean plus and minus spread."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.cohort_ages import cohort_cdf
from bandits.delay import DelayCDF
from bandits.delay_model import corrected_evidence


def curve() -> DelayCDF:
    """A concave F on a one-week window: 0.5 at one hour, 0.8 at three."""
    edges = np.array([0.0, 1.0, 3.0, 24.0, 168.0])
    return DelayCDF(168.0, edges, np.array([0.0, 0.5, 0.8, 0.95, 1.0]), 100.0, 20.0)


def test_two_equal_sends_are_exact_and_no_spread_is_f_at_the_mean():
    cdf = curve()
    ages = np.array([1.0, 0.25])  # sends at 10:00 and 10:45, read at 11:00
    mean, spread = ages.mean(), ages.std()
    assert cohort_cdf(cdf, mean, spread) == pytest.approx(cdf(ages).mean())
    assert cohort_cdf(cdf, mean, spread) == pytest.approx(0.3125)
    assert cdf(mean) == pytest.approx(0.3125)  # linear between edges: no bias here
    spread_out = np.array([3.0, 0.25])  # across a bend of F: the mean age over-states it
    assert cdf(spread_out.mean()) > cdf(spread_out).mean() + 0.05
    assert cohort_cdf(cdf, spread_out.mean(), spread_out.std()) == pytest.approx(
        cdf(spread_out).mean()
    )
    assert cohort_cdf(cdf, [0.5, 2.0], None) == pytest.approx(cdf([0.5, 2.0]))
    assert cohort_cdf(cdf, [0.5, 2.0], 0.0) == pytest.approx(cdf([0.5, 2.0]))


def test_the_younger_point_is_clipped_at_zero_and_the_spread_is_checked():
    cdf = curve()
    # Most decisions just made, one an hour old: mean less spread is below zero.
    ages = np.array([0.0] * 9 + [1.0])
    assert ages.mean() < ages.std()
    assert cohort_cdf(cdf, ages.mean(), ages.std()) == pytest.approx(
        cdf(ages.mean() + ages.std()) / 2.0
    )
    for bad in (-0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="spread"):
            cohort_cdf(cdf, [1.0], [bad])


def test_corrected_evidence_discounts_each_cohort_by_its_spread():
    cdf = curve()
    exposures = np.array([[100.0, 100.0]])
    successes = np.array([[30.0, 10.0]])
    means, spreads = np.array([2.0, 0.5]), np.array([2.0, 0.0])
    plain = corrected_evidence(successes, exposures, means, cdf)
    spread = corrected_evidence(successes, exposures, means, cdf, age_spread=spreads)
    expected = (100 * (cdf(0.0) + cdf(4.0)) / 2 + 100 * cdf(0.5)) / 200
    assert spread.maturity[0] == pytest.approx(expected)
    assert plain.maturity[0] == pytest.approx((cdf(2.0) + cdf(0.5)) / 2)
    assert spread.maturity[0] < plain.maturity[0]
    with pytest.raises(ValueError, match="age_spread"):
        corrected_evidence(successes, exposures, means, cdf, age_spread=np.ones(3))
