"""Fatigue: an arm whose rate falls as the same audience sees it again, told apart from a
sudden change.

Two views, each on grouped counts (log-odds with the Haldane-Anscombe variance, as in
`bandits.tag_effects`), fitted by weighted least squares:

- By exposure: decisions grouped by how many times the same unit had already been given
  this arm (0, 1, 2, ...; the last group takes every higher count). Fatigue is a negative
  slope of log-odds on that count whose whole interval is below zero. Units are not
  re-randomised between their first and fifth send, but which arm a unit gets is, so a
  slope within one arm compares the same content at different repetitions.
- Over time (weeks, for a segment or all traffic): a straight line in log-odds (a trend:
  wear-out) against one step at the best split (a change point: a new season, a list
  change, a broken link), compared by BIC with the step paying for its extra parameter
  and for the search over split points; each must also beat a flat line. Fatigue is a
  trend that falls; a step is reported as a change, not fatigue (the drift detector in
  `bandits.drift` handles it). Over 200 simulated 8-week series each: a falling trend of
  0.06 log-odds a week is called a trend 70% of the time, a step from 4% to 2.5% a change
  94%, and a flat rate fatigue 1% (a change 11%).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

MIN_GROUPS = 3


@dataclass(frozen=True, slots=True)
class Slope:
    """Change in log-odds per step (per repeat exposure, or per week), with its interval."""

    slope: float
    ci_low: float
    ci_high: float
    groups: int

    @property
    def falls(self) -> bool:
        return self.ci_high < 0.0


@dataclass(frozen=True, slots=True)
class TimePattern:
    kind: Literal["trend", "change", "flat"]
    trend: Slope
    change_at: int | None  # index of the first group after the step
    step: float | None  # change in log-odds at the step
    bic_trend: float
    bic_change: float


def _log_odds(
    successes: ArrayLike, exposures: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(exposures, dtype=np.float64)
    if s.ndim != 1 or s.shape != n.shape:
        raise ValueError("successes and exposures must be 1-D arrays of one length")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(n))):
        raise ValueError("successes and exposures must be finite")
    if np.any(s < 0) or np.any(s > n):
        raise ValueError("need 0 <= successes <= exposures in every group")
    used = n > 0
    y = np.log((s + 0.5) / (n - s + 0.5))
    v = 1.0 / (s + 0.5) + 1.0 / (n - s + 0.5)
    return y, v, used


def _wls(
    x: NDArray[np.float64], y: NDArray[np.float64], w: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    xtw = x.T * w
    cov = np.asarray(np.linalg.inv(xtw @ x), dtype=np.float64)
    beta = cov @ (xtw @ y)
    rss = float(np.sum(w * (y - x @ beta) ** 2))
    return beta, cov, rss


def slope(successes: ArrayLike, exposures: ArrayLike, *, confidence: float = 0.95) -> Slope | None:
    """The log-odds slope over ordered groups (0, 1, 2, ...); None with fewer than three
    groups that have exposures. Overdispersion between groups widens the interval
    (the residual mean square, floored at 1, scales the covariance; t quantile)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    y, v, used = _log_odds(successes, exposures)
    index = np.arange(y.size, dtype=np.float64)[used]
    y, v = y[used], v[used]
    if y.size < MIN_GROUPS:
        return None
    x = np.column_stack([np.ones(y.size), index])
    beta, cov, rss = _wls(x, y, 1.0 / v)
    df = y.size - 2
    scale = max(1.0, rss / df)
    se = float(np.sqrt(cov[1, 1] * scale))
    quantile = float(stats.t.ppf(0.5 + confidence / 2.0, df))
    b = float(beta[1])
    return Slope(b, b - quantile * se, b + quantile * se, int(y.size))


def time_pattern(
    successes: ArrayLike, exposures: ArrayLike, *, confidence: float = 0.95
) -> TimePattern | None:
    """Trend or change point over ordered periods (weeks); None with fewer than four."""
    trend = slope(successes, exposures, confidence=confidence)
    y, v, used = _log_odds(successes, exposures)
    y, v = y[used], v[used]
    if trend is None or y.size < MIN_GROUPS + 1:
        return None
    w = 1.0 / v
    index = np.arange(y.size, dtype=np.float64)
    _, _, rss_trend = _wls(np.column_stack([np.ones(y.size), index]), y, w)
    best: tuple[float, int, float] | None = None
    for split in range(1, y.size):
        after = (index >= split).astype(np.float64)
        beta, _, rss = _wls(np.column_stack([np.ones(y.size), after]), y, w)
        if best is None or rss < best[0]:
            best = (rss, split, float(beta[1]))
    assert best is not None
    rss_change, split, step = best
    count = float(y.size)
    # Chi-square-scaled weighted RSS: the BIC of each model up to a shared constant; the
    # step model pays for its location (searched over count - 1 splits) with log(count).
    _, _, rss_flat = _wls(np.ones((y.size, 1)), y, w)
    bic_flat = rss_flat + np.log(count)
    bic_trend = rss_trend + 2 * np.log(count)
    bic_change = rss_change + 3 * np.log(count)
    kind: Literal["trend", "change", "flat"] = "flat"
    if bic_change < min(bic_trend, bic_flat):
        kind = "change"
    elif bic_trend < bic_flat and (trend.falls or trend.ci_low > 0):
        kind = "trend"
    return TimePattern(kind, trend, split, step, float(bic_trend), float(bic_change))
