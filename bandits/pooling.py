"""Segment pooling: priors that let a small segment start from what the other segments know.

Each segment's prior for arm k is centred on arm k's rate in the *other* segments
(leave-one-segment-out), so a segment's own data never counts twice, with a concentration fitted
to how much the arm's rate varies between segments (DESIGN.md, "The policy").
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

# Smoothing for pooled means, in pseudo-exposures: keeps a prior mean strictly inside (0, 1)
# when the other segments have seen no success (or nothing but successes) yet.
_MEAN_SMOOTHING = 1.0


def _smoothed_mean(successes: float, exposures: float) -> float:
    return (successes + 0.5 * _MEAN_SMOOTHING) / (exposures + _MEAN_SMOOTHING)


def fit_concentration(successes: ArrayLike, exposures: ArrayLike) -> float | None:
    """Method-of-moments beta-binomial concentration (alpha + beta) across groups.

    Uses the groups with exposures; returns None when fewer than two have any (no spread to
    measure) and ``inf`` when the observed spread is no more than binomial noise explains. With
    rho = 1 / (concentration + 1) the between-group correlation and mu the pooled rate,

        E[sum_t n_t (p_t - mu)^2] = mu (1 - mu) [(T - 1) + rho (N - sum_t n_t^2 / N - (T - 1))],

    which is solved for rho (the one-way ANOVA estimator for binomial data; Kleinman 1973).
    """
    y = np.asarray(successes, dtype=np.float64)
    n = np.asarray(exposures, dtype=np.float64)
    seen = n > 0
    y, n = y[seen], n[seen]
    groups = y.size
    if groups < 2:
        return None
    total = float(n.sum())
    mean = float(y.sum()) / total
    spread = mean * (1.0 - mean)
    if spread <= 0:
        # Every group at 0% (or 100%): no sign of heterogeneity.
        return float("inf")
    dispersion = float(np.sum(n * (y / n - mean) ** 2)) / spread
    denominator = total - float(np.sum(n**2)) / total - (groups - 1)
    if denominator <= 0:
        # Groups of one exposure each carry no within-group information to separate from spread.
        return None
    rho = (dispersion - (groups - 1)) / denominator
    if rho <= 0:
        return float("inf")
    if rho >= 1:
        return 0.0
    return 1.0 / rho - 1.0


def segment_priors(
    successes: ArrayLike,
    exposures: ArrayLike,
    *,
    strength: float = 2.0,
    max_concentration: float = 200.0,
    evidence: ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Prior (alpha, beta), each of shape (S, K), for S segments and K arms.

    For segment s and arm k, from the other segments only:

    - arm k has exposures elsewhere: mean = arm k's pooled rate there; concentration = the
      beta-binomial spread of arm k's rate across those segments, clamped to
      [strength, max_concentration] and to at most arm k's exposures there (a prior is never
      more certain than the data behind its mean); with only one other segment the spread is
      unknown, so the concentration is ``strength``;
    - else, the other segments have any exposures: their all-arms pooled rate, ``strength``;
    - else (one segment, or nothing seen elsewhere): the experiment's all-arms pooled rate with
      ``strength`` pseudo-exposures: the design's weak prior for an unsegmented experiment. This
      is the one case where a segment's own data reach its prior, weighted as two exposures.

    Inputs may be float (decayed or delay-corrected counts). ``evidence`` (optional, the
    shape of ``exposures``, at most them) is what the exposures are worth once the delay
    model's doubt is counted (``CorrectedEvidence.exposures``, the certainty times the
    effective exposures): the concentration is held to the others' ``evidence`` instead of
    their exposures, while the mean and the spread are read on the unshrunk counts. So a
    segment's prior carries the other segments' doubt once, and is not shrunk again with
    the segment's own counts. (Built from the shrunk counts instead, the mean of a young
    arm was pulled to one half by the smoothing, a 2.5% arm read 56%, and the spread of
    shrunk counts looked like binomial noise.)
    """
    y = np.asarray(successes, dtype=np.float64)
    n = np.asarray(exposures, dtype=np.float64)
    if y.ndim != 2 or y.shape != n.shape:
        raise ValueError("successes and exposures must be (segments, arms) arrays of one shape")
    if y.shape[0] < 1 or y.shape[1] < 1:
        raise ValueError("need at least one segment and one arm")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(n))):
        raise ValueError("successes and exposures must be finite")
    if np.any(y < 0) or np.any(n < 0):
        raise ValueError("successes and exposures must be non-negative")
    if np.any(y > n + 1e-9):
        raise ValueError("successes cannot exceed exposures")
    if not np.isfinite(strength) or strength <= 0:
        raise ValueError("strength must be a positive finite number")
    if not np.isfinite(max_concentration) or max_concentration < strength:
        raise ValueError("max_concentration must be finite and at least strength")
    y = np.minimum(y, n)
    worth = n if evidence is None else np.asarray(evidence, dtype=np.float64)
    if worth.shape != n.shape or not np.all(np.isfinite(worth)) or np.any(worth < 0):
        raise ValueError("evidence must be finite, non-negative and of the exposures' shape")
    worth = np.minimum(worth, n)

    segments, arms = y.shape
    mean = np.empty((segments, arms))
    concentration = np.empty((segments, arms))
    everything = _smoothed_mean(float(y.sum()), float(n.sum()))
    for s in range(segments):
        others = np.arange(segments) != s
        other_y, other_n, other_worth = y[others], n[others], worth[others]
        other_total_n = float(other_n.sum())
        fallback_mean = (
            _smoothed_mean(float(other_y.sum()), other_total_n) if other_total_n > 0 else everything
        )
        for k in range(arms):
            arm_n = float(other_n[:, k].sum())
            if arm_n <= 0:
                mean[s, k] = fallback_mean
                concentration[s, k] = strength
                continue
            mean[s, k] = _smoothed_mean(float(other_y[:, k].sum()), arm_n)
            fitted = fit_concentration(other_y[:, k], other_n[:, k])
            if fitted is None:
                concentration[s, k] = strength
            else:
                cap = float(other_worth[:, k].sum())
                concentration[s, k] = max(strength, min(fitted, max_concentration, cap))
    alpha = concentration * mean
    beta = concentration * (1.0 - mean)
    return alpha, beta
