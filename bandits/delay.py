"""Delayed rewards: estimate the exposure-to-success delay distribution and discount young cohorts.

A decision younger than the attribution window has not had its full chance to convert, so it
counts as F(age) of an exposure, where F is the delay CDF conditional on converting inside the
window (DESIGN.md, "The policy").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

# The delay grid: first bin edge at 10 seconds, each bin 25% wider than the last.
FIRST_EDGE_HOURS = 10.0 / 3600.0
GRID_RATIO = 1.25


@dataclass(frozen=True, eq=False)
class DelayCDF:
    """F(d) = P(delay <= d | success inside the window), piecewise linear between grid points.

    ``edges_hours`` starts at 0 and ends at ``window_hours``; ``values`` are F at those edges
    (non-decreasing, ``values[-1] == 1``). ``observations`` is the (weighted) number of successes
    the estimate used and ``prior_weight`` the pseudo-observations it was blended with.
    """

    window_hours: float
    edges_hours: FloatArray
    values: FloatArray
    observations: float
    prior_weight: float

    def __post_init__(self) -> None:
        edges = np.array(self.edges_hours, dtype=np.float64)
        values = np.array(self.values, dtype=np.float64)
        if edges.ndim != 1 or edges.shape != values.shape or edges.size < 2:
            raise ValueError("edges_hours and values must be 1-D arrays of the same length >= 2")
        if edges[0] != 0.0 or not np.isclose(edges[-1], self.window_hours):
            raise ValueError("edges_hours must run from 0 to window_hours")
        if np.any(np.diff(edges) <= 0):
            raise ValueError("edges_hours must be strictly increasing")
        if not np.all(np.isfinite(values)) or np.any(np.diff(values) < 0):
            raise ValueError("values must be finite and non-decreasing")
        if values[0] < 0 or not np.isclose(values[-1], 1.0):
            raise ValueError("values must start at >= 0 and end at 1")
        values[-1] = 1.0
        edges.setflags(write=False)
        values.setflags(write=False)
        object.__setattr__(self, "edges_hours", edges)
        object.__setattr__(self, "values", values)

    def __call__(self, age_hours: ArrayLike) -> FloatArray:
        """F at ``age_hours``: 0 at or below 0, exactly 1 at and beyond the window."""
        ages = np.asarray(age_hours, dtype=np.float64)
        if np.any(np.isnan(ages)):
            raise ValueError("age_hours must not be NaN")
        # np.interp clamps to the end values, so ages <= 0 give values[0] and ages >= the window
        # give exactly 1.0.
        return np.asarray(np.interp(ages, self.edges_hours, self.values), dtype=np.float64)

    def median_hours(self) -> float:
        """The delay by which half of the in-window successes have arrived."""
        return float(np.interp(0.5, self.values, self.edges_hours))


def _exponential_window_cdf(
    edges: FloatArray, median_hours: float, window_hours: float
) -> FloatArray:
    """Exponential delay CDF with the given median, conditioned on delay <= window."""
    rate = np.log(2.0) / median_hours
    # -expm1(-x) = 1 - exp(-x) without cancellation for short delays.
    cdf = -np.expm1(-rate * edges)
    return np.asarray(cdf / -np.expm1(-rate * window_hours), dtype=np.float64)


def _as_1d(name: str, values: ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    if np.any(array < 0):
        raise ValueError(f"{name} must be non-negative")
    return array


def delay_grid(window_hours: float) -> FloatArray:
    """Grid edges from 0 to the window: 10 s wide near zero, growing by 25% a bin.

    Delays span five orders of magnitude (a push click in seconds, a conversion in days), so
    the grid is even in log-delay: a week's window takes 50 bins, and the bin around any age is
    a quarter of that age wide, which is what a cohort's own truncation needs to be resolved.
    """
    if not np.isfinite(window_hours) or window_hours <= 0:
        raise ValueError("window_hours must be a positive finite number")
    if window_hours <= FIRST_EDGE_HOURS * GRID_RATIO:
        return np.array([0.0, float(window_hours)])
    bins = int(np.ceil(np.log(window_hours / FIRST_EDGE_HOURS) / np.log(GRID_RATIO)))
    edges = np.concatenate(([0.0], np.geomspace(FIRST_EDGE_HOURS, window_hours, bins + 1)))
    edges[-1] = float(window_hours)
    return np.asarray(edges, dtype=np.float64)


def clean_observations(
    success_delay_hours: ArrayLike,
    success_cohort_age_hours: ArrayLike,
    window_hours: float,
    weights: ArrayLike | None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validated (delays, truncation ages, counts) of the successes inside the window."""
    if not np.isfinite(window_hours) or window_hours <= 0:
        raise ValueError("window_hours must be a positive finite number")
    delays = _as_1d("success_delay_hours", success_delay_hours)
    ages = _as_1d("success_cohort_age_hours", success_cohort_age_hours)
    if delays.shape != ages.shape:
        raise ValueError("success_delay_hours and success_cohort_age_hours must have one shape")
    counts = np.ones_like(delays) if weights is None else _as_1d("weights", weights)
    if counts.shape != delays.shape:
        raise ValueError("weights must have the shape of success_delay_hours")
    if np.any(delays > ages + 1e-9):
        raise ValueError("a success cannot be older than its cohort (delay > cohort age)")
    # Successes later than the window are not successes for this metric; cohorts older than the
    # window have seen every in-window delay, so their truncation is the window itself.
    inside = delays <= window_hours
    return delays[inside], np.minimum(ages[inside], window_hours), counts[inside]


def reverse_risk_sets(
    delays: FloatArray, ages: FloatArray, counts: FloatArray, edges: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per bin of ``edges``: the successes in it, and its reverse risk set (see
    ``estimate_delay_cdf`` for why these are the successes that inform the bin)."""
    n_bins = edges.size - 1
    # Bin j (1-based) is (edges[j-1], edges[j]]; a delay of exactly 0 falls into bin 1.
    event_bin = np.clip(np.searchsorted(edges, delays, side="left"), 1, n_bins)
    # The last bin whose upper edge the cohort's age has reached (0 if younger than one bin).
    last_bin = np.searchsorted(edges, ages + 1e-9, side="right") - 1
    # A delay inside the cohort's current, partial bin informs no bin; on the log grid that
    # bin is a fifth of the cohort's age, so little is lost.
    usable = event_bin <= last_bin
    event_bin, last_bin, counts = event_bin[usable], last_bin[usable], counts[usable]

    events = np.bincount(event_bin, weights=counts, minlength=n_bins + 2)[1 : n_bins + 1]
    # Observation i is in the reverse risk set of bins event_bin[i] .. last_bin[i].
    enter = np.bincount(event_bin, weights=counts, minlength=n_bins + 2)
    leave = np.bincount(last_bin + 1, weights=counts, minlength=n_bins + 2)
    at_risk = np.cumsum(enter - leave)[1 : n_bins + 1]
    return np.asarray(events, dtype=np.float64), np.asarray(at_risk, dtype=np.float64)


def reverse_hazard_cdf(
    events: FloatArray, at_risk: FloatArray, base_values: FloatArray, prior_weight: float
) -> FloatArray:
    """F at the edges: reverse Kaplan-Meier with a beta-process prior centred on ``base_values``."""
    prior_events = prior_weight * np.diff(base_values)
    prior_at_risk = prior_weight * base_values[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        hazard = (events + prior_events) / (at_risk + prior_at_risk)
    hazard = np.clip(np.nan_to_num(hazard, nan=0.0), 0.0, 1.0)

    # F(edges[j-1]) = prod_{k >= j} (1 - h_k), accumulated from the window downwards.
    survival_down = np.cumprod((1.0 - hazard)[::-1])[::-1]
    values = np.append(survival_down, 1.0)
    return np.asarray(np.maximum.accumulate(values), dtype=np.float64)


def estimate_delay_cdf(
    success_delay_hours: ArrayLike,
    success_cohort_age_hours: ArrayLike,
    window_hours: float,
    *,
    prior_median_hours: float = 4.0,
    prior_weight: float = 50.0,
    weights: ArrayLike | None = None,
    bin_hours: float | None = None,
) -> DelayCDF:
    """Estimate the in-window delay CDF from successes observed under right truncation.

    ``success_delay_hours[i]`` is the delay from exposure to the i-th observed success and
    ``success_cohort_age_hours[i]`` the current age of its exposure cohort: the success could only
    be seen because its delay is <= that age. ``weights`` (optional) lets the caller pass
    aggregated (delay, age) cells with a count each. ``bin_hours`` sets an even grid; by default
    the grid is ``delay_grid`` (fine near zero, coarse near the window).

    Why not the plain empirical CDF: a young cohort can only show short delays, so pooling the
    observed delays over-represents short ones and F comes out too high: young cohorts would be
    discounted too little and young arms (new variants, above all) would look worse than they
    are. The data are right-truncated, not censored: we never see the
    successes that have not happened yet, not even as "still pending". The standard remedy is to
    run Kaplan-Meier backwards in time (Lagakos, Barraj & De Gruttola 1988): with reverse hazard

        h_j = P(delay in bin j | delay <= t_j),  t_j the upper edge of bin j,

    the successes that can inform h_j without bias are those known to have delay <= t_j whose
    cohort is at least t_j old (so any delay in [0, t_j] would have been visible): the reverse
    risk set R_j. Then F(t_{j-1}) = F(t_j) * (1 - h_j), and F(window) = 1 by definition, so F is
    the product of (1 - h_k) over the bins above.

    Before data, and beyond the oldest cohort's age where nothing is observable, the reverse
    hazard comes from a prior: here an exponential delay with median ``prior_median_hours``,
    conditioned on the window (``fit_delay_model`` uses a prior fitted to the data instead),
    counted as ``prior_weight`` pseudo-successes that are never truncated. Each bin's hazard is
    the beta-process posterior mean (d_j + w_j h0_j) / (R_j + w_j) with w_j = prior_weight *
    F0(t_j) the prior's own risk set, so with no data F is exactly the prior and with much data
    the prior's pull fades like 1 / (number of successes).
    """
    if not np.isfinite(prior_median_hours) or prior_median_hours <= 0:
        raise ValueError("prior_median_hours must be a positive finite number")
    if not np.isfinite(prior_weight) or prior_weight <= 0:
        raise ValueError("prior_weight must be a positive finite number")
    if bin_hours is not None and (not np.isfinite(bin_hours) or bin_hours <= 0):
        raise ValueError("bin_hours must be a positive finite number")
    delays, ages, counts = clean_observations(
        success_delay_hours, success_cohort_age_hours, window_hours, weights
    )
    if bin_hours is None:
        edges = delay_grid(window_hours)
    else:
        n_bins = int(np.ceil(window_hours / bin_hours - 1e-9))
        edges = np.minimum(np.arange(n_bins + 1, dtype=np.float64) * bin_hours, window_hours)
        edges[-1] = window_hours
    base = _exponential_window_cdf(edges, prior_median_hours, window_hours)
    events, at_risk = reverse_risk_sets(delays, ages, counts, edges)
    values = reverse_hazard_cdf(events, at_risk, base, prior_weight)
    return DelayCDF(
        window_hours=float(window_hours),
        edges_hours=edges,
        values=values,
        observations=float(counts.sum()),
        prior_weight=float(prior_weight),
    )


def effective_exposures(
    exposures: ArrayLike, cohort_age_hours: ArrayLike, cdf: DelayCDF
) -> FloatArray:
    """Exposures per cohort discounted to the share of their successes that can have arrived."""
    exposure_array = np.asarray(exposures, dtype=np.float64)
    ages = np.asarray(cohort_age_hours, dtype=np.float64)
    if np.any(~np.isfinite(exposure_array)) or np.any(exposure_array < 0):
        raise ValueError("exposures must be finite and non-negative")
    if np.any(~np.isfinite(ages)):
        raise ValueError("cohort_age_hours must be finite")
    return np.asarray(exposure_array * cdf(ages), dtype=np.float64)


def corrected_counts(
    successes_by_cohort: ArrayLike,
    exposures_by_cohort: ArrayLike,
    ages: ArrayLike,
    cdf: DelayCDF,
) -> tuple[FloatArray, FloatArray]:
    """Totals per arm over cohorts (last axis): (successes, effective exposures).

    Inputs are (..., C) for C cohorts; ``ages`` broadcasts against them (usually shape (C,)).
    Successes are capped at the effective exposures of the arm's total, not per cohort: a young
    cohort can legitimately show a quick success while F(age) is still tiny, and capping each
    cohort would throw those successes away and bias the rate down. The cap on the total keeps
    Beta(a0 + s, b0 + n_eff - s) well-defined.
    """
    successes = np.asarray(successes_by_cohort, dtype=np.float64)
    exposures = np.asarray(exposures_by_cohort, dtype=np.float64)
    if successes.shape != exposures.shape or successes.ndim == 0:
        raise ValueError("successes_by_cohort and exposures_by_cohort must have one shape")
    if np.any(~np.isfinite(successes)) or np.any(successes < 0):
        raise ValueError("successes_by_cohort must be finite and non-negative")
    if np.any(successes > exposures + 1e-9):
        raise ValueError("a cohort cannot have more successes than exposures")
    try:
        age_array = np.broadcast_to(np.asarray(ages, dtype=np.float64), exposures.shape)
    except ValueError as error:
        raise ValueError("ages must broadcast against the cohort counts") from error
    effective = effective_exposures(exposures, age_array, cdf).sum(axis=-1)
    total_successes = np.minimum(successes.sum(axis=-1), effective)
    return np.asarray(total_successes, dtype=np.float64), np.asarray(effective, dtype=np.float64)
