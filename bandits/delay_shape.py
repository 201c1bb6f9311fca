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
    with the number of successes."""
    keys = np.round(log_values * 100.0)
    unique, inverse = np.unique(keys, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights=counts, minlength=unique.size)
    return np.asarray(unique / 100.0, dtype=np.float64), np.asarray(weights, dtype=np.float64)


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
        keys = np.stack([np.round(upper[left] * 100.0), np.round(lower * 100.0)], axis=1)
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        w_p = np.asarray(
            np.bincount(inverse.ravel(), weights=counts[left], minlength=unique.shape[0]),
            dtype=np.float64,
        )
        log_u = np.asarray(unique[:, 0] / 100.0, dtype=np.float64)
        # At least 1% apart, so the interval's probability is never zero.
        log_l = np.asarray(np.minimum(unique[:, 1], unique[:, 0] - 1) / 100.0, dtype=np.float64)
    return _Observations(log_d, w_d, log_t, w_t, log_u, log_l, w_p)


def _negative_log_posterior(theta: FloatArray, data: _Observations) -> float:
    # Clipped so that the unbounded optimiser's trial steps stay finite.
    mu = float(np.clip(theta[0], -30.0, 30.0))
    log_sigma = float(np.clip(theta[1], np.log(0.01), np.log(20.0)))
    sigma = np.exp(log_sigma)
    z_d = (data.log_delays - mu) / sigma
    z_t = (data.log_truncations - mu) / sigma
    # Each success could be seen only because its delay is <= its cohort's age: the likelihood
    # is f(d) / F(age) (right truncation), not f(d).
    loglik = float((data.delay_weights * (-0.5 * z_d**2 - log_sigma)).sum()) - float(
        (data.truncation_weights * special.log_ndtr(z_t)).sum()
    )
    if data.pair_weights.size:
        # log(G(upper) - G(lower)), computed without cancellation.
        log_up = special.log_ndtr((data.log_upper - mu) / sigma)
        log_low = special.log_ndtr((data.log_lower - mu) / sigma)
        gap = log_up + np.log1p(-np.exp(np.minimum(log_low - log_up, -1e-12)))
        loglik -= float((data.pair_weights * gap).sum())
    prior = ((mu - PRIOR_LOG_MEDIAN_HOURS) / PRIOR_LOG_MEDIAN_SD) ** 2 / 2.0 + (
        (log_sigma - PRIOR_LOG_SIGMA) / PRIOR_LOG_SIGMA_SD
    ) ** 2 / 2.0
    return float(-loglik + prior)


def _hessian(theta: FloatArray, data: _Observations) -> FloatArray:
    step = 1e-3
    hess = np.zeros((2, 2))
    for i in range(2):
        for j in range(2):
            e_i, e_j = np.eye(2)[i] * step, np.eye(2)[j] * step
            hess[i, j] = (
                _negative_log_posterior(theta + e_i + e_j, data)
                - _negative_log_posterior(theta + e_i - e_j, data)
                - _negative_log_posterior(theta - e_i + e_j, data)
                + _negative_log_posterior(theta - e_i - e_j, data)
            ) / (4 * step * step)
    return hess


def fit_lognormal(
    delays: FloatArray,
    truncation: FloatArray,
    counts: FloatArray,
    earliest: FloatArray | None = None,
) -> LogNormalShape:
    """MAP fit of a log-normal delay to truncated observations, with its Laplace spread.

    ``truncation[i]`` is the largest delay observation i could have shown (its cohort's age,
    capped at the window), ``earliest[i]`` (default 0) the smallest. With no observations
    the result is the prior.
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
    # Unbounded BFGS: the prior keeps the optimum in a sensible range; the clip below only
    # guards against a degenerate sample (every delay the same).
    result = optimize.minimize(_negative_log_posterior, start, args=(data,), method="BFGS")
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
