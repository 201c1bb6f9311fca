"""Segment priors: leave-one-segment-out centring, fitted and clamped concentration."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bandits.pooling import fit_concentration, segment_priors


@st.composite
def segment_data(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    segments = draw(st.integers(2, 5))
    arms = draw(st.integers(1, 4))
    exposures = draw(
        hnp.arrays(np.float64, (segments, arms), elements=st.integers(0, 5_000).map(float))
    )
    share = draw(hnp.arrays(np.float64, (segments, arms), elements=st.floats(0, 1)))
    return np.floor(exposures * share), exposures


def test_prior_is_centred_on_the_other_segments() -> None:
    successes = np.array([[30.0, 10.0], [300.0, 100.0], [330.0, 90.0]])
    exposures = np.array([[1_000.0, 1_000.0], [10_000.0, 10_000.0], [11_000.0, 9_000.0]])
    alpha, beta = segment_priors(successes, exposures)
    mean = alpha / (alpha + beta)
    # Segment 0, arm 0: (300 + 330) / 21,000 = 0.03 (smoothed by half a success in one exposure).
    assert mean[0, 0] == pytest.approx(630.5 / 21_001)
    assert mean[0, 1] == pytest.approx(190.5 / 19_001)
    # Segments agree to within binomial noise, so the concentration is the cap.
    np.testing.assert_allclose(alpha + beta, 200.0)


def test_heterogeneous_segments_get_a_weaker_prior() -> None:
    rates = np.array([0.01, 0.05, 0.02, 0.08, 0.03])
    exposures = np.full((5, 1), 20_000.0)
    successes = np.round(rates[:, None] * exposures)
    alpha, beta = segment_priors(successes, exposures)
    concentration = alpha + beta
    # Between-segment spread of rates ~0.03 around ~0.04 gives a concentration of ~30-50.
    assert np.all((concentration > 10) & (concentration < 100))
    fitted = fit_concentration(successes[1:, 0], exposures[1:, 0])
    assert fitted is not None
    assert concentration[0, 0] == pytest.approx(fitted)


def test_concentration_never_exceeds_the_data_behind_the_mean() -> None:
    successes = np.array([[0.0], [1.0], [2.0]])
    exposures = np.array([[0.0], [20.0], [40.0]])
    alpha, beta = segment_priors(successes, exposures, max_concentration=500.0)
    assert alpha[0, 0] + beta[0, 0] == pytest.approx(60.0)


def test_one_other_segment_gives_the_weak_strength() -> None:
    alpha, beta = segment_priors(np.array([[5.0], [50.0]]), np.array([[100.0], [1_000.0]]))
    np.testing.assert_allclose(alpha + beta, 2.0)
    assert alpha[0, 0] / 2.0 == pytest.approx(50.5 / 1_001)


def test_fallbacks_when_other_segments_have_no_data() -> None:
    # Arm 1 has been shown in segment 0 only; arm 0 in both.
    successes = np.array([[10.0, 4.0], [40.0, 0.0]])
    exposures = np.array([[100.0, 50.0], [400.0, 0.0]])
    alpha, beta = segment_priors(successes, exposures, strength=2.0)
    # Segment 1, arm 1: arm 1's rate in segment 0, weak (one other segment: spread unknown).
    assert alpha[1, 1] / 2.0 == pytest.approx(4.5 / 51)
    # Segment 0, arm 1: no data elsewhere for arm 1 -> segment 1's all-arms rate.
    assert alpha[0, 1] / 2.0 == pytest.approx(40.5 / 401)
    np.testing.assert_allclose(alpha + beta, 2.0)
    # A single segment: the experiment's pooled rate, weak.
    alpha, beta = segment_priors(successes[:1], exposures[:1])
    np.testing.assert_allclose(alpha / 2.0, 14.5 / 151)
    np.testing.assert_allclose(alpha + beta, 2.0)
    # Nothing at all: a uniform prior.
    alpha, beta = segment_priors(np.zeros((3, 2)), np.zeros((3, 2)))
    np.testing.assert_allclose(alpha, 1.0)
    np.testing.assert_allclose(beta, 1.0)


@settings(max_examples=100, deadline=None)
@given(data=segment_data(), segment=st.integers(0, 4), change=st.data())
def test_property_own_data_never_in_own_prior(
    data: tuple[np.ndarray, np.ndarray], segment: int, change: st.DataObject
) -> None:
    successes, exposures = data
    segment %= successes.shape[0]
    others = np.arange(successes.shape[0]) != segment
    assume(exposures[others].sum() > 0)
    alpha, beta = segment_priors(successes, exposures)
    new_exposures = change.draw(
        hnp.arrays(np.float64, successes.shape[1], elements=st.integers(0, 5_000).map(float))
    )
    new_share = change.draw(hnp.arrays(np.float64, successes.shape[1], elements=st.floats(0, 1)))
    successes2, exposures2 = successes.copy(), exposures.copy()
    exposures2[segment] = new_exposures
    successes2[segment] = np.floor(new_exposures * new_share)
    alpha2, beta2 = segment_priors(successes2, exposures2)
    np.testing.assert_array_equal(alpha2[segment], alpha[segment])
    np.testing.assert_array_equal(beta2[segment], beta[segment])


@settings(max_examples=100, deadline=None)
@given(
    data=segment_data(),
    strength=st.floats(0.1, 10.0),
    cap=st.floats(10.0, 10_000.0),
)
def test_property_priors_positive_finite_and_clamped(
    data: tuple[np.ndarray, np.ndarray], strength: float, cap: float
) -> None:
    successes, exposures = data
    alpha, beta = segment_priors(successes, exposures, strength=strength, max_concentration=cap)
    assert alpha.shape == beta.shape == successes.shape
    assert np.all(np.isfinite(alpha))
    assert np.all(np.isfinite(beta))
    assert np.all(alpha > 0)
    assert np.all(beta > 0)
    concentration = alpha + beta
    assert np.all(concentration >= strength * (1 - 1e-9))
    assert np.all(concentration <= cap * (1 + 1e-9))


@settings(max_examples=100, deadline=None)
@given(
    others_rate=st.floats(0.01, 0.2),
    small_rate=st.floats(0.0, 0.5),
    small_exposures=st.integers(1, 300),
    segments=st.integers(2, 6),
)
def test_property_pooling_shrinks_a_small_segment_toward_the_others(
    others_rate: float, small_rate: float, small_exposures: int, segments: int
) -> None:
    exposures = np.full((segments, 1), 5_000.0)
    successes = np.round(exposures * others_rate)
    exposures[0, 0] = small_exposures
    successes[0, 0] = np.round(small_exposures * small_rate)
    alpha, beta = segment_priors(successes, exposures)
    own_rate = successes[0, 0] / exposures[0, 0]
    prior_mean = alpha[0, 0] / (alpha[0, 0] + beta[0, 0])
    posterior_mean = (alpha[0, 0] + successes[0, 0]) / (alpha[0, 0] + beta[0, 0] + exposures[0, 0])
    # Between the segment's own rate and the others', strictly closer to the others'.
    low, high = sorted((own_rate, prior_mean))
    assert low - 1e-12 <= posterior_mean <= high + 1e-12
    if abs(own_rate - prior_mean) > 1e-9:
        assert abs(posterior_mean - prior_mean) < abs(own_rate - prior_mean)


def test_small_segment_posterior_is_pulled_most_when_it_is_smallest() -> None:
    exposures = np.array([[50.0], [10_000.0], [10_000.0], [10_000.0]])
    successes = np.array([[5.0], [300.0], [310.0], [290.0]])
    alpha, beta = segment_priors(successes, exposures)
    posterior_mean = (alpha[0, 0] + 5.0) / (alpha[0, 0] + beta[0, 0] + 50.0)
    # Own rate 10% against 3% elsewhere; with concentration 200 the posterior is ~4.4%.
    assert posterior_mean == pytest.approx((200 * 900.5 / 30_001 + 5.0) / 250.0)


def test_fit_concentration_edge_cases() -> None:
    assert fit_concentration([1.0], [10.0]) is None
    assert fit_concentration([0.0, 0.0], [10.0, 20.0]) == float("inf")
    assert fit_concentration([0.0, 1.0], [1.0, 1.0]) is None
    # Segments at 0% and 100% each: all spread, no noise.
    assert fit_concentration([0.0, 100.0], [100.0, 100.0]) == pytest.approx(0.0, abs=1e-9)


# Invalid inputs.


@pytest.mark.parametrize(
    ("successes", "exposures", "kwargs", "message"),
    [
        ([1.0], [2.0], {}, "segments, arms"),
        ([[1.0, 1.0]], [[2.0]], {}, "one shape"),
        (np.zeros((0, 2)), np.zeros((0, 2)), {}, "at least one"),
        ([[-1.0]], [[2.0]], {}, "non-negative"),
        ([[3.0]], [[2.0]], {}, "exceed"),
        ([[np.nan]], [[2.0]], {}, "finite"),
        ([[1.0]], [[2.0]], {"strength": 0.0}, "strength"),
        ([[1.0]], [[2.0]], {"max_concentration": 1.0}, "max_concentration"),
        ([[1.0]], [[2.0]], {"max_concentration": float("inf")}, "max_concentration"),
    ],
)
def test_segment_priors_rejects_invalid_inputs(
    successes: object, exposures: object, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        segment_priors(successes, exposures, **kwargs)  # type: ignore[arg-type]
