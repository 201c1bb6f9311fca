"""The figures a snapshot keeps per segment, and the helpers that shape the delay-corrected
evidence for them (no I/O here)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bandits import beta_posterior
from bandits.delay_model import CorrectedEvidence, Tempered, too_early
from service.policy.cohorts import Cohorts
from service.policy.inputs import ExperimentInfo
from service.policy.snapshot import RefreshHint, SegmentFigures

FloatArray = NDArray[np.float64]


def flat(counts: FloatArray) -> FloatArray:
    """(S + 1, K, H) -> (K, (S + 1) * H): every segment's cohorts of an arm on one axis."""
    return np.asarray(np.moveaxis(counts, 1, 0).reshape(counts.shape[1], -1), dtype=np.float64)


def once(tempered: Tempered, prior_alpha: ArrayLike, prior_beta: ArrayLike) -> Tempered:
    """A segment's tempered evidence with its prior as built (``bandits.pooling.segment_priors``
    has already held it to the other segments' evidence after their doubt): the segment's
    doubt shrinks its own counts, not the other segments' a second time."""
    shape = tempered.scale.shape
    return replace(
        tempered,
        prior_alpha=np.broadcast_to(np.asarray(prior_alpha, dtype=np.float64), shape).copy(),
        prior_beta=np.broadcast_to(np.asarray(prior_beta, dtype=np.float64), shape).copy(),
    )


def segment_evidence(evidence: CorrectedEvidence, i: int) -> CorrectedEvidence:
    """One segment's row of per-segment evidence."""
    return CorrectedEvidence(
        successes=evidence.successes[i],
        exposures=evidence.exposures[i],
        maturity=evidence.maturity[i],
        maturity_low=evidence.maturity_low[i],
        maturity_high=evidence.maturity_high[i],
        certainty=evidence.certainty[i],
        observed_successes=evidence.observed_successes[i],
        effective_exposures=evidence.effective_exposures[i],
        reported_certainty=evidence.reported_certainty[i],
        contradicted=None if evidence.contradicted is None else evidence.contradicted[i],
        fitted_exposures=None
        if evidence.fitted_exposures is None
        else evidence.fitted_exposures[i],
        unseen=evidence.unseen,
        wave_maturity=None if evidence.wave_maturity is None else evidence.wave_maturity[:, i],
    )


def reported_interval(
    result: Any, evidence: CorrectedEvidence, prior_alpha: ArrayLike, prior_beta: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """The reported 95% interval of the corrected rate: the posterior's, widened where the fit
    to the slowest delays disagrees with the fit to all of them (``reported_certainty``).
    ``prior_alpha``/``prior_beta`` are the untempered prior
    (``CorrectedEvidence.reported_interval`` says how it is used).

    Only the report, the learnings and the loop's input read it; P(best), the expected loss
    and the allocation keep the policy's posterior (a shared error in F mostly cancels
    between arms). It contains the policy's interval, except that ``segment_figures`` then
    raises its lower end to what the data already show (``at_least_observed``).
    """
    low, high = evidence.reported_interval(prior_alpha, prior_beta)
    return (
        np.minimum(low, np.asarray(result.ci_low, dtype=np.float64)),
        np.maximum(high, np.asarray(result.ci_high, dtype=np.float64)),
    )


def at_least_observed(
    low: FloatArray, successes: FloatArray, exposures: FloatArray, estimate: ArrayLike
) -> FloatArray:
    """The reported interval's lower end, raised to what the data already show.

    Successes only accumulate, so the eventual rate is at least the rate observed so far, and
    the 2.5% point of the observed rate's own (Jeffreys) interval is a floor that no delay
    correction can lower. Without it, young evidence shrunk by the delay model's doubt
    reported lower ends near zero for an arm already seen at 4% (40 of 1,029 clicks half an
    hour into an email send read 0.2% to 31%). The floor never passes the estimate itself.
    """
    seen = np.asarray(successes, dtype=np.float64)
    n = np.maximum(np.asarray(exposures, dtype=np.float64), seen)
    floor, _high = beta_posterior(seen, n, 0.5, 0.5).credible_interval(0.95)
    floor = np.where(seen > 0, floor, 0.0)
    return np.maximum(low, np.minimum(floor, np.asarray(estimate, dtype=np.float64)))


def contradicted_curves(
    values: FloatArray, evidence: CorrectedEvidence, exposures: FloatArray
) -> dict[str, list[float]]:
    """Where a row's delay fit is contradicted (``bandits.delay_model._uncontradicted``): the
    curves its arms' figures used, as the fitted curve ``values`` scaled and capped at 1:
    ``values`` for the central figures and ``least_values`` for the "slow wave" bound (the
    smallest F the data allow). The other bound, "nothing more to come", is F = 1 at every
    age so far.

    The factors come from the row's evidence (its maturity range runs from one bound to the
    other), so the report's evaluation can carry the same two bounds as the arms' intervals.
    The curves are scaled before they are rounded: the fitted F may be 1e-13 at these ages.
    """
    n = np.asarray(exposures, dtype=np.float64)
    fitted_exposures = evidence.fitted_exposures
    fitted = float(np.sum(fitted_exposures)) if fitted_exposures is not None else 0.0
    curve = np.asarray(values, dtype=np.float64)

    def scaled(total: float) -> list[float]:
        factor = total / fitted if fitted > 0 else np.inf
        lifted = np.minimum(curve * factor, 1.0) if np.isfinite(factor) else np.ones_like(curve)
        return [round(float(v), 9) for v in np.where(curve > 0, lifted, 0.0)]

    return {
        "values": scaled(float(np.sum(evidence.effective_exposures))),
        "least_values": scaled(float(np.sum(evidence.maturity_low * n))),
    }


def too_early_mask(
    evidence: CorrectedEvidence, exposures: FloatArray, experiment: ExperimentInfo
) -> NDArray[np.bool_]:
    """Arms whose evidence is mostly still to arrive, or whose delay fit the data contradict
    (how much is still to come is unknown): never eligible for retirement yet."""
    early = np.array(
        [
            too_early(float(m), float(n), experiment.min_exposures)
            for m, n in zip(evidence.maturity, exposures, strict=True)
        ],
        dtype=bool,
    )
    return early if evidence.contradicted is None else early | evidence.contradicted


def refresh_hint(cohorts: Cohorts, window_hours: float) -> RefreshHint:
    """When this snapshot's delay corrections go stale: the youngest cohort still in the window.

    F moves on a log scale of age, so a cohort's correction is re-examined once it has aged
    by a fifth (after 36 s at three minutes, 12 minutes at an hour); an experiment whose
    cohorts have all passed the window needs no recomputation until new evidence arrives. A
    cohort has passed it once the younger of its two quadrature ages (mean less spread, see
    ``bandits.cohort_ages``) has, in every cell of its hour: until then its F is short of 1.
    """
    lower = cohorts.age_hours - cohorts.age_spread_hours
    if cohorts.exposure_age_hours.size:
        cells = cohorts.exposure_age_hours - cohorts.exposure_age_spread_hours
        lower = np.minimum(lower, cells.min(axis=(0, 1)))
    young = cohorts.age_hours[lower < window_hours]
    youngest = float(np.min(young)) if young.size else None
    return RefreshHint(youngest_age_hours=youngest, window_hours=window_hours)


def segment_figures(
    result: Any,
    raw_e: FloatArray,
    raw_s: FloatArray,
    evidence: Tempered,
    maturity: CorrectedEvidence,
    interval: tuple[FloatArray, FloatArray],
    *,
    prior: tuple[float, float] | None = None,
) -> SegmentFigures:
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.where(raw_e > 0, raw_s / np.maximum(raw_e, 1.0), 0.0)
    interval = (at_least_observed(interval[0], raw_s, raw_e, result.posterior_mean), interval[1])

    def floats(values: FloatArray) -> tuple[float, ...]:
        return tuple(float(v) for v in values.tolist())

    def bools(values: NDArray[np.bool_]) -> tuple[bool, ...]:
        return tuple(bool(v) for v in values.tolist())

    return SegmentFigures(
        exposures=floats(raw_e),
        successes=floats(raw_s),
        observed_rate=floats(observed.round(6)),
        maturity=floats(maturity.maturity.round(4)),
        maturity_low=floats(maturity.maturity_low.round(4)),
        maturity_high=floats(maturity.maturity_high.round(4)),
        effective_exposures=floats(evidence.exposures.round(3)),
        effective_successes=floats(evidence.successes.round(3)),
        allocation=floats(result.allocation),
        exploit=floats(result.exploit),
        eligible=bools(result.eligible),
        exploration_share=float(result.exploration_share),
        probability_best=floats(result.probability_best),
        expected_loss=floats(result.expected_loss),
        posterior_mean=floats(result.posterior_mean),
        ci_low=floats(interval[0]),
        ci_high=floats(interval[1]),
        warming_up=bools(result.warming_up),
        prior=prior,
        policy_ci_low=floats(np.asarray(result.ci_low, dtype=np.float64)),
        policy_ci_high=floats(np.asarray(result.ci_high, dtype=np.float64)),
        prior_scale=floats(evidence.scale.round(9)),
    )
