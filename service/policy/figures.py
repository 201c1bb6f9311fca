"""The figures a snapshot keeps per segment, and the helpers that shape the delay-corrected
evidence for them (no I/O here)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from bandits.delay_model import CorrectedEvidence, too_early
from service.policy.cohorts import Cohorts
from service.policy.inputs import ExperimentInfo

FloatArray = NDArray[np.float64]


def flat(counts: FloatArray) -> FloatArray:
    """(S + 1, K, H) -> (K, (S + 1) * H): every segment's cohorts of an arm on one axis."""
    return np.asarray(np.moveaxis(counts, 1, 0).reshape(counts.shape[1], -1), dtype=np.float64)


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
    )


def too_early_mask(
    evidence: CorrectedEvidence, exposures: FloatArray, experiment: ExperimentInfo
) -> NDArray[np.bool_]:
    """Arms whose evidence is mostly still to arrive: never eligible for retirement yet."""
    return np.array(
        [
            too_early(float(m), float(n), experiment.min_exposures)
            for m, n in zip(evidence.maturity, exposures, strict=True)
        ],
        dtype=bool,
    )


def refresh_hint(cohorts: Cohorts, window_hours: float) -> dict[str, Any]:
    """When this snapshot's delay corrections go stale: the youngest cohort still in the window.

    F moves on a log scale of age, so a cohort's correction is re-examined once it has aged
    by a fifth (after 36 s at three minutes, 12 minutes at an hour); an experiment whose
    cohorts have all passed the window needs no recomputation until new evidence arrives.
    """
    young = cohorts.age_hours[cohorts.age_hours < window_hours]
    youngest = float(np.min(young)) if young.size else None
    return {"youngest_age_hours": youngest, "window_hours": window_hours}


def segment_figures(
    result: Any,
    raw_e: FloatArray,
    raw_s: FloatArray,
    eff_e: FloatArray,
    eff_s: FloatArray,
    maturity: CorrectedEvidence,
) -> dict[str, Any]:
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.where(raw_e > 0, raw_s / np.maximum(raw_e, 1.0), 0.0)
    return {
        "exposures": raw_e.tolist(),
        "successes": raw_s.tolist(),
        "observed_rate": observed.round(6).tolist(),
        "maturity": maturity.maturity.round(4).tolist(),
        "maturity_low": maturity.maturity_low.round(4).tolist(),
        "maturity_high": maturity.maturity_high.round(4).tolist(),
        "effective_exposures": eff_e.round(3).tolist(),
        "effective_successes": eff_s.round(3).tolist(),
        "allocation": result.allocation.tolist(),
        "exploit": result.exploit.tolist(),
        "eligible": result.eligible.tolist(),
        "exploration_share": result.exploration_share,
        "probability_best": result.probability_best.tolist(),
        "expected_loss": result.expected_loss.tolist(),
        "posterior_mean": result.posterior_mean.tolist(),
        "ci_low": result.ci_low.tolist(),
        "ci_high": result.ci_high.tolist(),
        "warming_up": result.warming_up.tolist(),
    }
