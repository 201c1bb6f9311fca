"""Drift: half-life decay of old evidence, and detection of a change in an arm's rate.

Posteriors may use decayed hourly buckets; gates (minimum samples, eligibility) keep using raw
counts so that they do not flap as evidence ages (DESIGN.md, "The policy").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from bandits.cohort_ages import cohort_cdf

FloatArray = NDArray[np.float64]

# Default evidence bar for a change, as a natural-log likelihood ratio (2 * LLR = 18). Under no
# change, the scan over split points behaves like the maximum of a standardised Brownian bridge
# (Siegmund 1985). The refresher rescans the same history many times (every refresh), and the
# scans are strongly correlated, so the lifetime false-alarm rate of a stationary arm is larger
# than one scan's but stays small: a month of hourly buckets at 3% and 40 exposures an hour,
# rescanned every 3 hours, alarmed in 1 of 100 months at 9 (0 at 12, 3 of 60 at 8; see
# tests/bandits/test_drift.py). The price: a drop from 3% to 1% needs a median of about 840
# exposures after the change (1,250 at 12; 90th percentile 1,400 against 1,600). The bar was
# 12 until round 6: on the email-clock best-arm swap (bench/regret/README.md, "Best-arm swap
# (round 6)") the fatigued leader's drop was then found 2 to 3 hours later.
DEFAULT_CHANGE_THRESHOLD = 9.0


@dataclass(frozen=True)
class ChangePoint:
    """The most likely single change in one arm's rate over its hourly buckets.

    ``index`` is the first bucket of the new regime (drop buckets ``[:index]`` to forget the
    old one); ``log_likelihood_ratio`` the evidence (natural log, change vs no change).
    """

    index: int
    log_likelihood_ratio: float
    rate_before: float
    rate_after: float
    exposures_before: float
    exposures_after: float


def decay_weights(
    bucket_age_hours: ArrayLike,
    half_life_hours: float | None,
    age_spread_hours: ArrayLike | None = None,
) -> FloatArray:
    """Weight of each bucket, the mean of 0.5 ** (age / half_life) over its decisions' ages;
    all ones without a half-life.

    ``bucket_age_hours`` is each bucket's mean age and ``age_spread_hours`` (optional, the
    shape of the ages) their spread (standard deviation): the mean weight is then two-point
    quadrature at the mean plus and minus the spread (``bandits.cohort_ages.cohort_cdf``),
    as F of a cohort is. The weight is convex in age, so the weight at the mean age under-
    states a spread-out bucket's: sends at 10:00 and 10:58 read at 12:00 with a half-life of
    15 minutes keep 3.1% of their weight, not the 1.5% of their mean age.

    A bucket stamped slightly in the future (clock skew between replicas) counts as age 0, so a
    weight never exceeds 1 and decayed counts never exceed raw counts.
    """
    ages = np.asarray(bucket_age_hours, dtype=np.float64)
    if np.any(np.isnan(ages)) or np.any(np.isinf(ages) & (ages < 0)):
        raise ValueError("bucket_age_hours must not be NaN or -inf")
    if half_life_hours is None:
        return np.ones_like(ages)
    if not np.isfinite(half_life_hours) or half_life_hours <= 0:
        raise ValueError("half_life_hours must be a positive finite number or None")

    def weight(age: ArrayLike) -> FloatArray:
        return np.asarray(np.exp2(-np.maximum(age, 0.0) / half_life_hours), dtype=np.float64)

    if age_spread_hours is None:
        return weight(ages)
    return cohort_cdf(weight, np.maximum(ages, 0.0), age_spread_hours)


def _log_likelihood(successes: FloatArray, exposures: FloatArray) -> FloatArray:
    """Maximised binomial log-likelihood, s log p + (n - s) log(1 - p) at p = s / n."""
    failures = exposures - successes
    with np.errstate(invalid="ignore", divide="ignore"):
        value = special.xlogy(successes, successes) + special.xlogy(failures, failures)
        value = value - special.xlogy(exposures, exposures)
    return np.asarray(value, dtype=np.float64)


def detect_change(
    successes: ArrayLike,
    exposures: ArrayLike,
    *,
    min_exposures_each_side: int = 500,
    threshold: float = DEFAULT_CHANGE_THRESHOLD,
) -> ChangePoint | None:
    """Scan one arm's hourly buckets (oldest first) for a single change in its rate.

    For every split with at least ``min_exposures_each_side`` raw exposures on each side, the
    binomial log-likelihood ratio of "two rates" against "one rate" is computed from cumulative
    sums (linear time); the best split is reported when its ratio reaches ``threshold``.
    Pass raw counts: decayed counts would understate the evidence of old buckets.
    """
    y = np.asarray(successes, dtype=np.float64)
    n = np.asarray(exposures, dtype=np.float64)
    if y.ndim != 1 or y.shape != n.shape:
        raise ValueError("successes and exposures must be 1-D arrays of one shape")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(n))):
        raise ValueError("successes and exposures must be finite")
    if np.any(y < 0) or np.any(n < 0) or np.any(y > n + 1e-9):
        raise ValueError("need 0 <= successes <= exposures in every bucket")
    if min_exposures_each_side < 1:
        raise ValueError("min_exposures_each_side must be at least 1")
    if not np.isfinite(threshold) or threshold <= 0:
        raise ValueError("threshold must be a positive finite number")
    y = np.minimum(y, n)
    if y.size < 2:
        return None

    # Split at index i (1..T-1): buckets [:i] before, [i:] after.
    cum_y = np.cumsum(y)[:-1]
    cum_n = np.cumsum(n)[:-1]
    total_y, total_n = float(y.sum()), float(n.sum())
    after_y, after_n = total_y - cum_y, total_n - cum_n
    valid = (cum_n >= min_exposures_each_side) & (after_n >= min_exposures_each_side)
    if not np.any(valid):
        return None
    whole = float(_log_likelihood(np.array([total_y]), np.array([total_n]))[0])
    ratio = _log_likelihood(cum_y, cum_n) + _log_likelihood(after_y, after_n) - whole
    ratio = np.where(valid, ratio, -np.inf)
    best = int(np.argmax(ratio))
    if ratio[best] < threshold:
        return None
    return ChangePoint(
        index=best + 1,
        log_likelihood_ratio=float(ratio[best]),
        rate_before=float(cum_y[best] / cum_n[best]),
        rate_after=float(after_y[best] / after_n[best]),
        exposures_before=float(cum_n[best]),
        exposures_after=float(after_n[best]),
    )


def stale_evidence_weights(
    exposures: ArrayLike,
    change_index: Sequence[int | None],
    *,
    retain_exposures: float,
) -> FloatArray:
    """(K, H) weights of each arm's hourly buckets after the changes detected in some arms.

    An arm with a detected change forgets its buckets before it (weight 0). A change in one
    arm's rate says the traffic moved, so every arm's evidence older than the latest detected
    change is stale: it is scaled down to count as at most ``retain_exposures`` exposures
    (at its old rate), a prior the new evidence soon outweighs. An arm that rose while it was
    losing, seen only through the exploration share, has far too few exposures to show its own
    change; with its old evidence bounded, its posterior widens and it is tried again.
    ``exposures`` (K, H) are the counts the cap is measured on; without any change, all ones.
    """
    n = np.asarray(exposures, dtype=np.float64)
    if n.ndim != 2 or len(change_index) != n.shape[0]:
        raise ValueError("exposures must be (arms, hours) with one change index per arm")
    if not np.isfinite(retain_exposures) or retain_exposures < 0:
        raise ValueError("retain_exposures must be a non-negative finite number")
    weights = np.ones_like(n)
    for k, index in enumerate(change_index):
        if index is not None:
            weights[k, :index] = 0.0
    detected = [index for index in change_index if index is not None]
    if not detected:
        return weights
    latest = max(detected)
    old = (n[:, :latest] * weights[:, :latest]).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(old > retain_exposures, retain_exposures / old, 1.0)
    weights[:, :latest] *= scale[:, None]
    return weights
