"""The delay model at every time scale: fitted tail, honest intervals, maturity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from bandits.delay import DelayCDF, delay_grid
from bandits.delay_mixture import MixtureEvidence
from bandits.delay_model import (
    CorrectedEvidence,
    DelayModel,
    corrected_evidence,
    fit_delay_model,
    too_early,
)

WINDOW = 168.0
RATE = 0.05
# (log-median hours, sigma) of log-normal delays: push clicks, email clicks, conversions.
SCALES = {"push": (np.log(20 / 3600), 0.8), "email": (0.0, 1.2), "conversion": (np.log(30.0), 1.0)}
AGES = (1 / 60, 1 / 6, 1.0, 6.0, 24.0, WINDOW)


def in_window_share(scale: str) -> float:
    mu, sigma = SCALES[scale]
    return float(stats.norm.cdf((np.log(WINDOW) - mu) / sigma))


def one_send(
    rng: np.random.Generator, scale: str, age: float, exposures: int = 5000
) -> tuple[CorrectedEvidence, DelayModel]:
    """A send spread over its first ten minutes (or less), read ``age`` hours after it began."""
    mu, sigma = SCALES[scale]
    sent = rng.uniform(0.0, min(age, 1 / 6), exposures) if age > 1 / 60 else np.zeros(exposures)
    delay = rng.lognormal(mu, sigma, exposures)
    converts = (rng.random(exposures) < RATE) & (delay <= WINDOW)
    cohort_age = age - sent
    seen = converts & (delay <= cohort_age)
    model = fit_delay_model(delay[seen], cohort_age[seen], WINDOW)
    evidence = corrected_evidence(
        seen.astype(float)[None], np.ones(exposures)[None], cohort_age[None], model
    )
    return evidence, model


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_the_corrected_90_interval_covers_the_final_rate_about_90_percent(scale: str) -> None:
    """From one minute to the window, on the push, email and conversion time scales: the
    reported interval, which carries the whole of F's doubt (the policy's own posterior keeps
    only the part that differs between arms: none, for one arm)."""
    final = RATE * in_window_share(scale)
    runs = 40
    coverage = []
    for age in AGES:
        covered = 0
        for seed in range(runs):
            rng = np.random.default_rng([seed, int(age * 3600), len(scale)])
            evidence, _model = one_send(rng, scale, age)
            low, high = evidence.reported_interval(0.5, 0.5, level=0.90)
            covered += int(low[0] <= final <= high[0])
        coverage.append(covered / runs)
    # 40 runs at 90% give 36 +- 1.9; allow a run's worth of model error either side.
    assert all(0.75 <= c <= 1.0 for c in coverage), coverage
    assert np.mean(coverage) >= 0.85, coverage


def _mixture(rng: np.random.Generator, n: int) -> np.ndarray:
    """Half the clicks around ten minutes, half around six hours."""
    fast = rng.random(n) < 0.5
    return np.where(
        fast, rng.lognormal(np.log(10 / 60), 1.0, n), rng.lognormal(np.log(6.0), 1.0, n)
    )


def _heavy_tail(rng: np.random.Generator, n: int) -> np.ndarray:
    """Lomax (Pareto II) delays, scale half an hour, tail index 0.8: no finite mean."""
    return 0.5 * rng.pareto(0.8, n)


SHAPES = {
    "lognormal": lambda rng, n: rng.lognormal(0.0, 1.2, n),
    "mixture": _mixture,
    "heavy tail": _heavy_tail,
}


# (shape, age) whose final rate no reading of the data could promise: none since the slow wave
# the data cannot see yet is allowed for (``bandits.delay_unseen``); the fast-and-slow mix read
# an hour in was one (covered in 1 run of 40).
UNSEEN: set[tuple[str, float]] = set()


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_reported_interval_stays_honest_when_the_delays_are_not_log_normal(
    shape: str,
) -> None:
    """The tail model is a log-normal; the delays here are also a fast-and-slow mix and a heavy
    tail. From one minute to the window the reported 90% interval must still cover the final
    rate in about 90% of runs (the mix read an hour in excepted: ``UNSEEN``). The delays are
    called mixed, and the interval widened, only on evidence: never for log-normal delays,
    always for the mix once its slow half has begun to arrive. (The policy's own counts,
    without the tail fit, covered the mix read 6 h and 24 h in 45% and 68% of the time.)"""
    draw = SHAPES[shape]
    final_share = float(np.mean(draw(np.random.default_rng(99), 1_000_000) <= WINDOW))
    final = RATE * final_share
    runs, exposures = 40, 5000
    coverage, mixed = [], []
    for age in AGES:
        covered = called = 0
        for seed in range(runs):
            rng = np.random.default_rng([seed, int(age * 3600), 7])
            sent = rng.uniform(0.0, min(age, 1 / 6), exposures) if age > 1 / 60 else 0.0
            delay = draw(rng, exposures)
            converts = (rng.random(exposures) < RATE) & (delay <= WINDOW)
            cohort_age = np.broadcast_to(age - sent, (exposures,))
            seen = converts & (delay <= cohort_age)
            model = fit_delay_model(delay[seen], cohort_age[seen], WINDOW)
            evidence = corrected_evidence(
                seen.astype(float)[None], np.ones(exposures)[None], cohort_age[None], model
            )
            low, high = evidence.reported_interval(0.5, 0.5, level=0.90)
            covered += int(low[0] <= final <= high[0])
            called += int(model.mixed)
        coverage.append(covered / runs)
        mixed.append(called / runs)
    judged = [c for age, c in zip(AGES, coverage, strict=True) if (shape, age) not in UNSEEN]
    # 40 runs at 90% give 36 +- 1.9: well below 90% is under 75% at any age.
    assert all(c >= 0.75 for c in judged), coverage
    assert np.mean(judged) >= 0.85, coverage
    by_age = dict(zip(AGES, mixed, strict=True))
    if shape == "lognormal":
        assert max(mixed) <= 0.05, mixed
    if shape == "mixture":
        assert min(by_age[6.0], by_age[24.0], by_age[WINDOW]) >= 0.9, mixed
        assert by_age[1.0] <= 0.1, mixed  # what no mixture test can see yet


def test_a_slow_wave_that_has_barely_begun_is_allowed_for() -> None:
    """A fast-and-slow mix read an hour in: the fast half has arrived, a twentieth of the
    slow half has. The fit extrapolates "done" (central maturity near 1); the reported
    interval must still reach the final rate (before the unseen wave: 1 run of 40). The
    central estimate stays on the data (about the observed rate)."""
    covered = 0
    for seed in range(6):
        evidence, _model, final = _mixture_read(seed, 1.0)
        observed = float(evidence.observed_successes[0]) / 5000
        low, high = evidence.reported_interval(0.5, 0.5, level=0.90)
        covered += int(low[0] <= final <= high[0])
        assert evidence.maturity_low[0] < 0.6 < evidence.maturity[0]
        central = evidence.successes[0] / evidence.exposures[0]
        assert central < 1.3 * observed
    assert covered >= 5, covered


# Three arms of a first send: (successes, exposures).
FRESH_SEND = (np.array([20.0, 60.0, 120.0]), np.array([1000.0, 1000.0, 1000.0]))


def _fresh_send_read(
    seed: int, seconds: tuple[float, float], age: float
) -> tuple[CorrectedEvidence, DelayModel]:
    """``FRESH_SEND`` with every click ``seconds`` after the send, read ``age`` hours in."""
    successes, exposures = FRESH_SEND
    delays = np.random.default_rng(seed).uniform(*seconds, int(successes.sum())) / 3600
    model = fit_delay_model(delays, np.full(delays.size, age), WINDOW)
    evidence = corrected_evidence(successes[:, None], exposures[:, None], np.array([age]), model)
    return evidence, model


def test_two_second_clicks_read_at_five_seconds_are_not_known_to_be_complete() -> None:
    """Every click of a first send came within 2 s and it is read 5 s later: the data cannot
    tell a push send from an email send whose slow wave has not begun. The central maturity
    stays near 1 (so the estimate stays the observed rate), the low end does not."""
    successes, exposures = FRESH_SEND
    evidence, _model = _fresh_send_read(4, (0.2, 2.0), 5 / 3600)
    np.testing.assert_array_less(0.9, evidence.maturity)
    np.testing.assert_array_less(evidence.maturity_low, 0.5)
    low, high = evidence.reported_interval(0.5, 0.5)
    observed = successes / exposures
    np.testing.assert_array_less(low, observed)
    np.testing.assert_array_less(2.0 * observed, high)
    assert all(too_early(float(m), 1000, 100) for m in evidence.maturity_low)


def test_a_push_send_with_days_of_history_is_confident_again() -> None:
    """The same 2-second clicks, now with three days of hourly sends behind them whose clicks
    also all came within seconds: a slow wave would have shown in the old sends, so the
    maturity range closes and the interval is the binomial one again."""
    rng = np.random.default_rng(5)
    hours = np.arange(72.0, 0.0, -1.0)
    exposures = np.full(hours.size + 1, 100.0)
    ages = np.append(hours, 5 / 3600)
    clicks = rng.binomial(100, 0.05, ages.size).astype(float)
    delays = rng.uniform(0.2, 2.0, int(clicks.sum())) / 3600
    cohort_age = np.repeat(ages, clicks.astype(int))
    model = fit_delay_model(delays, cohort_age, WINDOW)
    evidence = corrected_evidence(clicks[None], exposures[None], ages[None], model)
    assert evidence.maturity_low[0] > 0.9, evidence.maturity_low
    low, high = evidence.reported_interval(0.5, 0.5)
    rate = clicks.sum() / exposures.sum()
    assert low[0] < rate < high[0] < 1.5 * rate
    assert not too_early(float(evidence.maturity_low[0]), exposures.sum(), 100)


def test_clicks_within_a_minute_read_minutes_later_are_mature() -> None:
    successes, exposures = FRESH_SEND
    evidence, model = _fresh_send_read(3, (5.0, 60.0), 4 / 60)
    assert model.cdf.median_hours() < 60 / 3600
    np.testing.assert_array_less(0.97, evidence.maturity)
    corrected = evidence.successes / evidence.exposures
    np.testing.assert_allclose(corrected, successes / exposures, rtol=0.03)


def test_young_email_evidence_is_immature_and_uncertain() -> None:
    """Ten minutes into an email send (median delay an hour) most clicks are still to come:
    the maturity says so, and the reported evidence is shrunk for the uncertainty of F (the
    policy's is not: with one arm, no part of that doubt differs between arms)."""
    evidence, model = one_send(np.random.default_rng(11), "email", 1 / 6)
    assert evidence.maturity[0] < 0.3
    assert evidence.maturity_low[0] <= evidence.maturity[0] <= evidence.maturity_high[0]
    assert evidence.reported_certainty[0] < 1.0
    assert evidence.certainty[0] == pytest.approx(1.0)
    assert too_early(float(evidence.maturity[0]), 5000, 500)
    assert model.shape is not None


def test_the_prior_pull_fades_as_delays_arrive() -> None:
    """With no delay the fit is the prior (median one hour); with many it is the data's."""
    empty = fit_delay_model(np.zeros(0), np.zeros(0), WINDOW)
    assert empty.shape is not None
    assert np.exp(empty.shape.mu) == pytest.approx(1.0)
    rng = np.random.default_rng(5)
    delays = rng.lognormal(np.log(10 / 3600), 0.5, 2000)
    fitted = fit_delay_model(delays, np.full(delays.size, 1.0), WINDOW)
    assert fitted.shape is not None
    assert np.exp(fitted.shape.mu) * 3600 == pytest.approx(10.0, rel=0.05)


def test_the_grid_is_fine_near_zero_and_coarse_near_the_window() -> None:
    edges = delay_grid(WINDOW)
    assert edges[0] == 0.0
    assert edges[-1] == WINDOW
    assert edges[1] * 3600 == pytest.approx(10.0)
    widths = np.diff(edges[1:])
    assert np.all(widths[1:] > widths[:-1])
    assert edges.size < 60


def test_the_snapshot_block_rebuilds_the_cdf() -> None:
    rng = np.random.default_rng(2)
    delays = rng.lognormal(0.0, 1.0, 500)
    model = fit_delay_model(delays, np.minimum(delays + rng.uniform(0, 50, 500), 100.0), WINDOW)
    block = model.to_json()
    rebuilt = DelayCDF(
        block["window_hours"],  # type: ignore[arg-type]
        np.array(block["edges_hours"]),
        np.array(block["values"]),
        block["observations"],  # type: ignore[arg-type]
        block["prior_weight"],  # type: ignore[arg-type]
    )
    probe = np.array([0.001, 0.1, 1.0, 10.0, 100.0])
    np.testing.assert_allclose(rebuilt(probe), model.cdf(probe), atol=1e-8)
    assert len(block["spread_values"]) == 4  # type: ignore[arg-type]
    # One log-normal: no tail curves (they widen the reported interval only when mixed).
    assert block["tail_values"] == []
    assert block["mixed"] is False
    assert block["mixture"]["bic_difference"] < 0  # type: ignore[index]


def _mixture_read(seed: int, age: float = 6.0) -> tuple[CorrectedEvidence, DelayModel, float]:
    """A fast-and-slow mix sent over ten minutes and read ``age`` hours in, and its final
    rate."""
    rng = np.random.default_rng([seed, int(age * 3600), 7])
    exposures = 5000
    sent = rng.uniform(0.0, 1 / 6, exposures)
    delay = _mixture(rng, exposures)
    converts = (rng.random(exposures) < RATE) & (delay <= WINDOW)
    cohort_age = age - sent
    seen = converts & (delay <= cohort_age)
    model = fit_delay_model(delay[seen], cohort_age[seen], WINDOW)
    evidence = corrected_evidence(
        seen.astype(float)[None], np.ones(exposures)[None], cohort_age[None], model
    )
    final = RATE * float(np.mean(_mixture(np.random.default_rng(99), 1_000_000) <= WINDOW))
    return evidence, model, final


def test_the_tail_fit_widens_the_reported_interval_only() -> None:
    """A fast-and-slow mix read six hours in: the fit to every delay underweights the slow
    half, so the policy's interval misses the final rate; two log-normals beat one by BIC,
    the model says the delays are mixed, and the reported interval (wider, containing the
    policy's) covers it. The policy's counts are exactly those of the model without the
    tail."""
    evidence, model, final = _mixture_read(3)
    assert model.mixed
    assert model.evidence is not None
    assert model.evidence.bic_difference > 10.0
    # The mixture fit finds the slow half: about half the clicks, a median of about 6 h.
    assert model.evidence.slow is not None
    assert model.evidence.weight_slow is not None
    assert 3.0 < np.exp(model.evidence.slow[0]) < 12.0
    assert 0.3 < model.evidence.weight_slow < 0.7
    assert model.tail_shape is not None
    s, n = float(evidence.successes[0]), float(evidence.exposures[0])
    policy = stats.beta.ppf([0.05, 0.95], 0.5 + s, 0.5 + n - s)
    assert not policy[0] <= final <= policy[1]
    successes, effective = evidence.reported_counts()
    s, n = float(successes[0]), float(effective[0])
    reported = stats.beta.ppf([0.05, 0.95], 0.5 + s, 0.5 + n - s)
    assert reported[0] <= policy[0]
    assert policy[1] <= reported[1]
    assert reported[0] <= final <= reported[1]
    assert evidence.reported_certainty[0] < evidence.certainty[0]
    assert evidence.maturity_low[0] < evidence.maturity[0]
    untailed = DelayModel(model.cdf, model.spread, model.shape)
    counts = (np.array([[250.0, 40.0]]), np.array([[5000.0, 5000.0]]), np.array([1.0, 0.5]))
    with_tail, without = corrected_evidence(*counts, model), corrected_evidence(*counts, untailed)
    np.testing.assert_array_equal(with_tail.successes, without.successes)
    np.testing.assert_array_equal(with_tail.exposures, without.exposures)
    np.testing.assert_array_equal(with_tail.maturity, without.maturity)
    # Without the tail the report carries the whole fit's doubt only; the tail adds to it.
    assert np.all(with_tail.reported_certainty < without.reported_certainty)
    assert np.all(without.reported_certainty <= without.certainty)


@pytest.mark.parametrize("age", [1.0, 24.0])
def test_log_normal_delays_are_not_called_mixed(age: float) -> None:
    """An hour and a day into a log-normal email send one log-normal is enough: no 'mixed',
    no tail widening: the reported interval carries the whole fit's doubt only."""
    rng = np.random.default_rng(21)
    delay = rng.lognormal(0.0, 1.2, 20_000)
    seen = delay <= age
    model = fit_delay_model(delay[seen], np.full(int(seen.sum()), age), WINDOW)
    assert model.evidence is not None
    assert model.evidence.bic_difference < 0.0
    assert not model.mixed
    assert model.tail == ()
    evidence = corrected_evidence([[200.0]], [[5000.0]], [age], model)
    whole = corrected_evidence([[200.0]], [[5000.0]], [age], DelayModel(model.cdf, model.spread))
    np.testing.assert_array_equal(evidence.reported_certainty, whole.reported_certainty)


def test_a_mixture_verdict_is_reused_until_the_successes_grow_by_a_tenth() -> None:
    _evidence, model, _final = _mixture_read(1)
    assert model.evidence is not None
    n = model.evidence.successes
    stored = MixtureEvidence.from_json(model.evidence.to_json())
    assert stored is not None
    assert stored.mixed
    assert stored.still_holds(n)
    assert stored.still_holds(1.1 * n)
    assert not stored.still_holds(1.2 * n)
    assert not stored.still_holds(0.9 * n)
    # A stored verdict stands in for the test: here a made-up "not mixed" one is believed.
    rng = np.random.default_rng([1, 6 * 3600, 7])
    sent = rng.uniform(0.0, 1 / 6, 5000)
    delay = _mixture(rng, 5000)
    converts = (rng.random(5000) < RATE) & (delay <= WINDOW)
    seen = converts & (delay <= 6.0 - sent)
    believed = fit_delay_model(
        delay[seen],
        (6.0 - sent)[seen],
        WINDOW,
        known_mixture=MixtureEvidence(-1.0, n),
    )
    assert not believed.mixed
    assert MixtureEvidence.from_json({"successes": "x"}) is None


def test_a_bare_cdf_is_a_model_without_spread() -> None:
    flat = DelayCDF(24.0, np.array([0.0, 24.0]), np.array([1.0, 1.0]), 0.0, 0.0)
    evidence = corrected_evidence([[3.0, 1.0]], [[10.0, 10.0]], [1.0, 30.0], flat)
    assert evidence.exposures[0] == pytest.approx(20.0)
    assert evidence.successes[0] == pytest.approx(4.0)
    assert evidence.certainty[0] == 1.0


def test_effective_exposures_never_fall_below_the_successes_seen() -> None:
    cdf = DelayCDF(24.0, np.array([0.0, 24.0]), np.array([0.0, 1.0]), 0.0, 1.0)
    evidence = corrected_evidence([[5.0]], [[10.0]], [0.1], cdf)  # F = 0.004: 0.04 exposures
    assert evidence.exposures[0] >= evidence.successes[0] == 5.0


def test_invalid_inputs_are_refused() -> None:
    cdf = DelayCDF(24.0, np.array([0.0, 24.0]), np.array([0.0, 1.0]), 0.0, 1.0)
    with pytest.raises(ValueError, match="one shape"):
        corrected_evidence([1.0], [1.0, 2.0], [1.0], cdf)
    with pytest.raises(ValueError, match="non-negative"):
        corrected_evidence([-1.0], [2.0], [1.0], cdf)
    with pytest.raises(ValueError, match="broadcast"):
        corrected_evidence([1.0, 1.0], [2.0, 2.0], [1.0, 2.0, 3.0], cdf)
    with pytest.raises(ValueError, match="finite"):
        corrected_evidence([1.0], [2.0], [np.nan], cdf)
    with pytest.raises(ValueError, match="prior_weight"):
        fit_delay_model([1.0], [2.0], 24.0, prior_weight=0.0)
    with pytest.raises(ValueError, match="older than its cohort"):
        fit_delay_model([3.0], [2.0], 24.0)
    with pytest.raises(ValueError, match="window_hours"):
        delay_grid(-1.0)
    with pytest.raises(ValueError, match="earliest_hours must have the shape"):
        fit_delay_model([1.0, 2.0], [3.0, 3.0], 24.0, earliest_hours=[0.0])
    with pytest.raises(ValueError, match="left truncation"):
        fit_delay_model([1.0], [3.0], 24.0, earliest_hours=[2.0])


def test_a_sample_of_the_newest_successes_is_fitted_with_its_left_truncation() -> None:
    """The refresher reads the newest successes by when they happened: an old decision's
    success is in the sample only if it came late. Told so, the fit is unbiased."""
    rng = np.random.default_rng(8)
    now = 400.0
    sent = rng.uniform(0.0, now, 60_000)
    delay = rng.lognormal(0.0, 1.2, sent.size)
    inside = (delay <= WINDOW) & (sent + delay <= now)
    sent, delay = sent[inside], delay[inside]
    occurs = sent + delay
    newest = np.argsort(-occurs)[:5000]
    cutoff = occurs[newest].min()
    age = now - sent[newest]
    earliest = np.minimum(np.maximum(cutoff - sent[newest], 0.0), delay[newest])
    told = fit_delay_model(delay[newest], age, WINDOW, earliest_hours=earliest)
    naive = fit_delay_model(delay[newest], age, WINDOW)
    truth = stats.lognorm(s=1.2, scale=1.0)
    probe = np.array([0.25, 1.0, 4.0])
    expected = truth.cdf(probe) / truth.cdf(WINDOW)
    np.testing.assert_allclose(told.cdf(probe), expected, atol=0.03)
    # Ignoring the left truncation over-weights long delays: F far too low.
    assert np.max(expected - naive.cdf(probe)) > 0.1


@settings(max_examples=40, deadline=None)
@given(
    delays=hnp.arrays(np.float64, st.integers(0, 30), elements=st.floats(0, 200)),
    extra_age=st.floats(0, 100),
    window=st.floats(0.01, 400.0),
    exposures=hnp.arrays(np.float64, 4, elements=st.floats(0, 1e5)),
    share=st.floats(0, 1),
    ages=hnp.arrays(np.float64, 4, elements=st.floats(0, 500)),
)
def test_any_data_give_a_cdf_and_sane_evidence(
    delays: np.ndarray,
    extra_age: float,
    window: float,
    exposures: np.ndarray,
    share: float,
    ages: np.ndarray,
) -> None:
    model = fit_delay_model(delays, delays + extra_age, window)
    for cdf in (model.cdf, *model.spread):
        assert cdf(0.0) == pytest.approx(0.0, abs=1e-9)
        assert cdf(window) == 1.0
        assert np.all(np.diff(cdf.values) >= 0)
    successes = np.floor(exposures * share)
    evidence = corrected_evidence(successes[None], exposures[None], ages, model)
    assert 0.0 <= evidence.maturity_low[0] <= evidence.maturity[0] <= 1.0
    assert evidence.maturity[0] <= evidence.maturity_high[0] <= 1.0
    assert 0.0 < evidence.certainty[0] <= 1.0
    assert 0.0 <= evidence.successes[0] <= evidence.exposures[0] + 1e-9
    assert evidence.exposures[0] <= exposures.sum() + 1e-6


def test_inside_the_first_ten_seconds_f_follows_the_fitted_shape() -> None:
    """Push clicks 1 to 3 s after the send, read at 4 s. No delay can inform the grid's first
    bin (0 to 10 s), and a straight line to F(10 s) said the send had had 40% of its chance
    (the rates came out 2.5 times the observed ones); the fitted shape says nearly all."""
    rng = np.random.default_rng(8)
    delays = rng.uniform(1, 3, 300) / 3600
    age = 4 / 3600
    model = fit_delay_model(delays, np.full(delays.size, age), WINDOW)
    inside = model.cdf(np.array([1.5, 2.0, 3.0, 4.0]) / 3600)
    assert np.all(np.diff(inside) > 0)
    assert 0.2 < inside[1] < 0.8  # about half of the clicks come within 2 s
    assert inside[-1] > 0.9
    exposures, successes = np.array([[3000.0]]), np.array([[300.0]])
    evidence = corrected_evidence(successes, exposures, np.array([age]), model)
    assert evidence.maturity[0] > 0.9
    rate = float(evidence.observed_successes[0] / evidence.effective_exposures[0])
    assert rate == pytest.approx(0.1, rel=0.1)


def test_the_policy_keeps_only_the_doubt_that_differs_between_arms() -> None:
    """F's doubt is shared: arms exposed at the same ages keep their whole counts for the
    policy (certainty 1), and prior and counts are shrunk alike for the report, so the mean
    is the arm's own; an arm exposed later than the others keeps the doubt of its young ages."""
    rng = np.random.default_rng(5)
    delays = rng.lognormal(0.0, 1.2, 400)
    seen = delays <= 2.0
    model = fit_delay_model(delays[seen], np.full(int(seen.sum()), 2.0), WINDOW)
    assert len(model.spread) == 4
    exposures = np.array([[1000.0, 0.0], [1000.0, 0.0], [0.0, 1000.0]])
    successes = np.array([[20.0, 0.0], [60.0, 0.0], [0.0, 40.0]])
    ages = np.array([2.0, 0.25])  # the third arm was added an hour and three quarters later
    evidence = corrected_evidence(successes, exposures, ages[None], model)
    assert evidence.certainty[2] < 0.995 < min(evidence.certainty[:2])
    assert np.all(evidence.reported_certainty < 0.95)  # the rate itself is unsure
    assert np.all(evidence.reported_certainty < evidence.certainty)
    own = evidence.tempered(1.0, 9.0, reported=True)
    mean = (own.prior_alpha + own.successes) / (own.prior_alpha + own.prior_beta + own.exposures)
    unshrunk = (1.0 + evidence.observed_successes) / (10.0 + evidence.effective_exposures)
    np.testing.assert_allclose(mean, unshrunk, rtol=1e-12)
    # Same ages for all: nothing between the arms to doubt.
    same = corrected_evidence(successes[:2], exposures[:2], ages[None], model)
    np.testing.assert_allclose(same.certainty, 1.0)


# F(0.1 h) = 0.1 / 24 on this curve: 750 exposures at that age expect 3.1 successes at most.
_TINY = DelayCDF(24.0, np.array([0.0, 24.0]), np.array([0.0, 1.0]), 0.0, 1.0)


def test_a_contradicted_fit_spans_all_arrived_to_the_least_slow_wave_with_one_f() -> None:
    """Four arms sent at one instant, with more successes than even a rate of 1 allows under
    the fitted F: the figures span "nothing more to come" (F = 1) to the fit scaled until the
    leader's rate is 1, one F for all arms (their contrast and one maturity kept)."""
    successes = np.array([19.0, 44.0, 93.0, 31.0])
    exposures = np.full(4, 750.0)
    model = DelayModel(_TINY, spread=(_TINY, _TINY, _TINY, _TINY))
    evidence = corrected_evidence(successes[:, None], exposures[:, None], 0.1, model)
    assert evidence.contradicted is not None
    assert evidence.contradicted.all()
    share = successes.max() / 750.0
    np.testing.assert_allclose(evidence.maturity, np.sqrt(share))
    np.testing.assert_allclose(evidence.maturity_low, share)
    np.testing.assert_allclose(evidence.maturity_high, 1.0)
    rates = evidence.observed_successes / evidence.effective_exposures
    np.testing.assert_allclose(rates, successes / 750.0 / np.sqrt(share))
    assert evidence.fitted_exposures is not None
    np.testing.assert_allclose(evidence.fitted_exposures, 750.0 * 0.1 / 24.0)
    low, high = evidence.reported_interval(0.5, 0.5)
    assert np.all(low <= successes / 750.0)
    assert np.all(high >= successes / 750.0)
    assert np.all(high - low > 0.1)


def test_a_chance_excess_is_no_contradiction_and_changes_nothing() -> None:
    """One success where 0.6 were due at a rate of 1 happens by chance (45%): the fit stands
    and the figures are what they were (clipped to the success, as before)."""
    cdf = DelayCDF(24.0, np.array([0.0, 24.0]), np.array([0.0, 1.0]), 0.0, 1.0)
    evidence = corrected_evidence([[1.0], [0.0]], [[144.0], [144.0]], [0.1], cdf)  # 0.6 due
    assert evidence.contradicted is not None
    assert not evidence.contradicted.any()
    np.testing.assert_allclose(evidence.effective_exposures, [1.0, 0.6])
    np.testing.assert_allclose(evidence.maturity, [1.0 / 144.0, 0.6 / 144.0])


def test_rows_are_judged_apart() -> None:
    """Segments (leading rows) are tested and scaled on their own arms only."""
    successes = np.array([[[19.0], [93.0]], [[1.0], [0.0]]])
    exposures = np.array([[[750.0], [750.0]], [[144.0], [144.0]]])
    evidence = corrected_evidence(successes, exposures, 0.1, _TINY)
    assert evidence.contradicted is not None
    np.testing.assert_array_equal(evidence.contradicted, [[True, True], [False, False]])
    np.testing.assert_allclose(evidence.maturity[1], [1.0 / 144.0, 0.6 / 144.0])
    np.testing.assert_allclose(evidence.maturity[0], np.sqrt(93.0 / 750.0))


def test_a_sigma_point_too_small_for_the_leader_is_scaled_for_every_arm_alike() -> None:
    """The fit stands (its central curve is not contradicted), but one sigma point's F is too
    small for the leader: that point's F is raised for all arms alike, so the arms share one
    lowest maturity (it was each arm's own observed rate) and keep their order at the top
    of the reported interval."""
    central = DelayCDF(24.0, np.array([0.0, 24.0]), np.array([0.5, 1.0]), 0.0, 1.0)
    successes = np.array([19.0, 44.0, 93.0, 31.0])
    model = DelayModel(central, spread=(central, _TINY, central, central))
    evidence = corrected_evidence(successes[:, None], np.full((4, 1), 750.0), 0.1, model)
    assert evidence.contradicted is not None
    assert not evidence.contradicted.any()
    np.testing.assert_allclose(evidence.maturity_low, 93.0 / 750.0)
    np.testing.assert_allclose(evidence.maturity, central(0.1))
    _low, high = evidence.reported_interval(0.5, 0.5)
    np.testing.assert_array_equal(np.argsort(high), np.argsort(successes))
