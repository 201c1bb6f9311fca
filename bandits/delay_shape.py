"""The shape of the delay distribution: a log-normal fitted to right-truncated delays.

The nonparametric estimate in ``bandits.delay`` can only speak about delays shorter than the
oldest cohort's age; beyond it (three minutes after the first send, every delay longer than three
minutes) something must say how much is still to come. A fixed prior median cannot serve push
clicks (seconds), email clicks (hours) and conversions (days) alike, so the tail comes from a
log-normal fitted to the delays the data show, with each success's truncation (the age of its
cohort) in the likelihood: if every click so far came within a minute of a send that is now
five minutes old, the fit says so, and the tail is short.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

FloatArray = NDArray[np.float64]

# A weak prior on (mu, log sigma) of log-delay in hours: median one hour, give or take a factor
# of 20 (sd 3 in log-hours spans ten seconds to two weeks at two sd), sigma about 1.5. It
# matters only while there are few successes; its pull fades like 1 / successes.
PRIOR_LOG_MEDIAN_HOURS = 0.0
PRIOR_LOG_MEDIAN_SD = 3.0
PRIOR_LOG_SIGMA = float(np.log(1.5))
PRIOR_LOG_SIGMA_SD = 0.5
# Delays are floored at one second: a clock skew or a click logged before its decision.
MIN_DELAY_HOURS = 1.0 / 3600.0


@dataclass(frozen=True)
class LogNormalShape:
    """Posterior (Laplace) of the log-normal delay: log-delay ~ N(mu, sigma^2), in hours.

    ``covariance`` is over (mu, log sigma). ``points`` returns the fit's sigma points, four
    parameter sets whose spread reproduces that covariance for any smooth function of them.
    """

    mu: float
    sigma: float
    covariance: tuple[tuple[float, float], tuple[float, float]]
    observations: float

    def points(self) -> list[tuple[float, float]]:
        """(mu, sigma) at centre +- sqrt(2) x each column of the covariance's square root
        (the unscented transform with no centre weight): averages over these four reproduce
        the mean and variance of any linear function of the parameters."""
        cov = np.array(self.covariance, dtype=np.float64)
        try:
            root = np.linalg.cholesky(cov + 1e-12 * np.eye(2))
        except np.linalg.LinAlgError:
            root = np.diag(np.sqrt(np.clip(np.diag(cov), 0.0, None)))
        centre = np.array([self.mu, np.log(self.sigma)])
        out = []
        for k in range(2):
            for sign in (1.0, -1.0):
                theta = centre + sign * np.sqrt(2.0) * root[:, k]
                out.append((float(theta[0]), float(np.exp(theta[1]))))
        return out


def window_cdf(hours: FloatArray, window_hours: float, mu: float, sigma: float) -> FloatArray:
    """Log-normal CDF conditioned on delay <= window; 0 at 0, 1 at the window."""
    h = np.asarray(hours, dtype=np.float64)
    with np.errstate(divide="ignore"):
        z = (np.log(np.maximum(h, 0.0)) - mu) / sigma
    log_top = special.log_ndtr(z)
    log_all = special.log_ndtr((np.log(window_hours) - mu) / sigma)
    values = np.exp(log_top - log_all)
    values = np.where(h <= 0, 0.0, np.minimum(values, 1.0))
    return np.asarray(np.where(h >= window_hours, 1.0, values), dtype=np.float64)


def _histogram(log_values: FloatArray, counts: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Group log-values on a 1% grid: the fit is unchanged, and its cost no longer grows
    with the number of successes. Counted into bins rather than sorted (a sort of every
    success was the fit's largest single cost)."""
    keys = np.rint(log_values * 100.0).astype(np.int64)
    if keys.size == 0:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.float64)
    low = int(keys.min())
    if int(keys.max()) - low > 1_000_000:  # only for absurd ranges: sort instead
        unique, inverse = np.unique(keys, return_inverse=True)
        weights = np.bincount(inverse.ravel(), weights=counts, minlength=unique.size)
        return np.asarray(unique / 100.0, dtype=np.float64), np.asarray(weights, np.float64)
    binned = np.bincount(keys - low, weights=counts)
    occupied = np.flatnonzero(binned)
    return (
        np.asarray((occupied + low) / 100.0, dtype=np.float64),
        np.asarray(binned[occupied], dtype=np.float64),
    )


@dataclass(frozen=True)
class _Observations:
    log_delays: FloatArray
    delay_weights: FloatArray
    log_truncations: FloatArray
    truncation_weights: FloatArray
    # Doubly truncated successes (seen only with a delay in [earliest, age]): grouped pairs.
    log_upper: FloatArray
    log_lower: FloatArray
    pair_weights: FloatArray


def _compress(
    delays: FloatArray, truncation: FloatArray, counts: FloatArray, earliest: FloatArray
) -> _Observations:
    # The truncated log-likelihood sum_i [log f(d_i) - log F(t_i)] splits into a sum over
    # delays and one over truncations, so each is grouped on its own.
    floor = np.maximum(delays, MIN_DELAY_HOURS)
    log_d, w_d = _histogram(np.log(floor), counts)
    upper = np.log(np.maximum(truncation, floor))
    left = earliest > 0
    log_t, w_t = _histogram(upper[~left], counts[~left])
    log_u = log_l = w_p = np.zeros(0, dtype=np.float64)
    if left.any():
        lower = np.log(np.minimum(np.maximum(earliest[left], MIN_DELAY_HOURS / 2), floor[left]))
        upper_keys = np.rint(upper[left] * 100.0).astype(np.int64)
        lower_keys = np.rint(lower * 100.0).astype(np.int64)
        # One integer per (upper, lower) pair: a 1-D sort is far cheaper than unique rows.
        lower_base = int(lower_keys.min())
        width = int(lower_keys.max()) - lower_base + 1
        upper_base = int(upper_keys.min())
        pair_keys = (upper_keys - upper_base) * width + (lower_keys - lower_base)
        unique, inverse = np.unique(pair_keys, return_inverse=True)
        w_p = np.asarray(
            np.bincount(inverse.ravel(), weights=counts[left], minlength=unique.size),
            dtype=np.float64,
        )
        unique_upper = unique // width + upper_base
        unique_lower = unique % width + lower_base
        log_u = np.asarray(unique_upper / 100.0, dtype=np.float64)
        # At least 1% apart, so the interval's probability is never zero.
        log_l = np.asarray(np.minimum(unique_lower, unique_upper - 1) / 100.0, dtype=np.float64)
    return _Observations(log_d, w_d, log_t, w_t, log_u, log_l, w_p)


def _log_phi(z: FloatArray) -> FloatArray:
    return np.asarray(-0.5 * z**2 - 0.5 * np.log(2.0 * np.pi), dtype=np.float64)


def _objective(theta: FloatArray, data: _Observations) -> tuple[float, FloatArray]:
    """The negative log posterior of (mu, log sigma) and its analytic gradient.

    With the gradient, BFGS needs a dozen evaluations instead of forty (each numerical
    gradient cost two more), and the Laplace Hessian comes from four gradients rather than
    sixteen values: the fit is the bulk of a young experiment's refresh.
    """
    # Clipped so that the unbounded optimiser's trial steps stay finite.
    mu = float(np.clip(theta[0], -30.0, 30.0))
    log_sigma = float(np.clip(theta[1], np.log(0.01), np.log(20.0)))
    sigma = np.exp(log_sigma)
    z_d = (data.log_delays - mu) / sigma
    z_t = (data.log_truncations - mu) / sigma
    # Each success could be seen only because its delay is <= its cohort's age: the likelihood
    # is f(d) / F(age) (right truncation), not f(d).
    log_cdf_t = special.log_ndtr(z_t)
    value = -float((data.delay_weights * (-0.5 * z_d**2 - log_sigma)).sum()) + float(
        (data.truncation_weights * log_cdf_t).sum()
    )
    # d/dz log Phi(z) = phi(z) / Phi(z), the inverse Mills ratio.
    mills_t = np.exp(_log_phi(z_t) - log_cdf_t)
    grad_mu = (
        -float((data.delay_weights * z_d).sum()) / sigma
        - float((data.truncation_weights * mills_t).sum()) / sigma
    )
    grad_log_sigma = -float((data.delay_weights * (z_d**2 - 1.0)).sum()) - float(
        (data.truncation_weights * mills_t * z_t).sum()
    )
    if data.pair_weights.size:
        # log(G(upper) - G(lower)), computed without cancellation: in the upper tail as
        # log(G(-lower) - G(-upper)), where both terms are far from one.
        z_u = (data.log_upper - mu) / sigma
        z_l = (data.log_lower - mu) / sigma
        upper_tail = z_l > 0
        big = special.log_ndtr(np.where(upper_tail, -z_l, z_u))
        small = special.log_ndtr(np.where(upper_tail, -z_u, z_l))
        gap = big + np.log1p(-np.exp(np.minimum(small - big, -1e-12)))
        value += float((data.pair_weights * gap).sum())
        density_u = np.exp(_log_phi(z_u) - gap)
        density_l = np.exp(_log_phi(z_l) - gap)
        grad_mu -= float((data.pair_weights * (density_u - density_l)).sum()) / sigma
        grad_log_sigma -= float((data.pair_weights * (density_u * z_u - density_l * z_l)).sum())
    value += ((mu - PRIOR_LOG_MEDIAN_HOURS) / PRIOR_LOG_MEDIAN_SD) ** 2 / 2.0 + (
        (log_sigma - PRIOR_LOG_SIGMA) / PRIOR_LOG_SIGMA_SD
    ) ** 2 / 2.0
    grad_mu += (mu - PRIOR_LOG_MEDIAN_HOURS) / PRIOR_LOG_MEDIAN_SD**2
    grad_log_sigma += (log_sigma - PRIOR_LOG_SIGMA) / PRIOR_LOG_SIGMA_SD**2
    return float(value), np.array([grad_mu, grad_log_sigma])


def _negative_log_posterior(theta: FloatArray, data: _Observations) -> float:
    return _objective(theta, data)[0]


def _hessian(theta: FloatArray, data: _Observations) -> FloatArray:
    """Central differences of the analytic gradient, symmetrised."""
    step = 1e-4
    columns = [
        (_objective(theta + step * e, data)[1] - _objective(theta - step * e, data)[1]) / (2 * step)
        for e in np.eye(2)
    ]
    hess = np.stack(columns, axis=1)
    return np.asarray((hess + hess.T) / 2.0, dtype=np.float64)


def fit_lognormal(
    delays: FloatArray,
    truncation: FloatArray,
    counts: FloatArray,
    earliest: FloatArray | None = None,
    *,
    start_at: tuple[float, float] | None = None,
) -> LogNormalShape:
    """MAP fit of a log-normal delay to truncated observations, with its Laplace spread.

    ``truncation[i]`` is the largest delay observation i could have shown (its cohort's age,
    capped at the window), ``earliest[i]`` (default 0) the smallest. With no observations
    the result is the prior. ``start_at`` (mu, sigma) starts the optimiser there (a nearby
    fit) instead of at the moments of the observed log-delays.
    """
    prior_cov = ((PRIOR_LOG_MEDIAN_SD**2, 0.0), (0.0, PRIOR_LOG_SIGMA_SD**2))
    start = np.array([PRIOR_LOG_MEDIAN_HOURS, PRIOR_LOG_SIGMA])
    if counts.size == 0 or float(counts.sum()) <= 0:
        return LogNormalShape(float(start[0]), float(np.exp(start[1])), prior_cov, 0.0)
    data = _compress(
        delays, truncation, counts, np.zeros_like(delays) if earliest is None else earliest
    )
    # Start from the observed log-delays: the optimiser then needs a handful of steps.
    mean = float(np.average(data.log_delays, weights=data.delay_weights))
    spread = float(np.sqrt(np.average((data.log_delays - mean) ** 2, weights=data.delay_weights)))
    start = np.array([mean, np.log(np.clip(spread, 0.3, 4.0))])
    if start_at is not None:
        start = np.array([start_at[0], np.log(start_at[1])])
    # Unbounded BFGS: the prior keeps the optimum in a sensible range; the clip below only
    # guards against a degenerate sample (every delay the same).
    # gtol: the gradient grows with the successes, so 1e-3 leaves the optimum within
    # 1e-3 / successes of its place, far inside the Laplace spread (~1 / sqrt(successes)).
    result = optimize.minimize(
        _objective, start, args=(data,), method="BFGS", jac=True, options={"gtol": 1e-3}
    )
    theta = np.clip(
        np.asarray(result.x, dtype=np.float64), [-15.0, np.log(0.05)], [15.0, np.log(8.0)]
    )
    hess = _hessian(theta, data)
    try:
        cov = np.linalg.inv(hess)
        if not np.all(np.isfinite(cov)) or np.any(np.linalg.eigvalsh(cov) <= 0):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        cov = np.array(prior_cov)
    # Never more certain than 1% in log-median: the log-normal is a shape, not the truth.
    cov = cov + np.diag([1e-4, 1e-4])
    return LogNormalShape(
        float(theta[0]),
        float(np.exp(theta[1])),
        ((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        float(counts.sum()),
    )
