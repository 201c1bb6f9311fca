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

    def cdf(self, hours: FloatArray, window_hours: float, mu: float, sigma: float) -> FloatArray:
        return window_cdf(hours, window_hours, mu, sigma)

    def points(self) -> list[tuple[float, float]]:
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


def _compress(
    delays: FloatArray, truncation: FloatArray, counts: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Group observations on a 1% grid in log-delay and log-truncation (the fit is unchanged)."""
    log_d = np.log(np.maximum(delays, MIN_DELAY_HOURS))
    log_t = np.log(np.maximum(truncation, np.maximum(delays, MIN_DELAY_HOURS)))
    keys = np.stack([np.round(log_d * 100.0), np.round(log_t * 100.0)], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights=counts, minlength=unique.shape[0])
    log_d_u = unique[:, 0] / 100.0
    log_t_u = np.maximum(unique[:, 1] / 100.0, log_d_u)
    return (
        np.asarray(log_d_u, dtype=np.float64),
        np.asarray(log_t_u, dtype=np.float64),
        np.asarray(weights, dtype=np.float64),
    )


def _negative_log_posterior(
    theta: FloatArray, log_d: FloatArray, log_t: FloatArray, weights: FloatArray
) -> float:
    mu, log_sigma = float(theta[0]), float(theta[1])
    sigma = np.exp(log_sigma)
    z_d = (log_d - mu) / sigma
    z_t = (log_t - mu) / sigma
    # Each success could be seen only because its delay is <= its cohort's age: the likelihood
    # is f(d) / F(age) (right truncation), not f(d).
    loglik = weights * (-0.5 * z_d**2 - log_sigma - special.log_ndtr(z_t))
    prior = ((mu - PRIOR_LOG_MEDIAN_HOURS) / PRIOR_LOG_MEDIAN_SD) ** 2 / 2.0 + (
        (log_sigma - PRIOR_LOG_SIGMA) / PRIOR_LOG_SIGMA_SD
    ) ** 2 / 2.0
    return float(-loglik.sum() + prior)


def _hessian(
    theta: FloatArray, log_d: FloatArray, log_t: FloatArray, weights: FloatArray
) -> FloatArray:
    step = 1e-3
    hess = np.zeros((2, 2))
    for i in range(2):
        for j in range(2):
            e_i, e_j = np.eye(2)[i] * step, np.eye(2)[j] * step
            hess[i, j] = (
                _negative_log_posterior(theta + e_i + e_j, log_d, log_t, weights)
                - _negative_log_posterior(theta + e_i - e_j, log_d, log_t, weights)
                - _negative_log_posterior(theta - e_i + e_j, log_d, log_t, weights)
                + _negative_log_posterior(theta - e_i - e_j, log_d, log_t, weights)
            ) / (4 * step * step)
    return hess


def fit_lognormal(delays: FloatArray, truncation: FloatArray, counts: FloatArray) -> LogNormalShape:
    """MAP fit of a log-normal delay to right-truncated observations, with its Laplace spread.

    ``truncation[i]`` is the largest delay observation i could have shown (its cohort's age,
    capped at the window). With no observations the result is the prior.
    """
    prior_cov = ((PRIOR_LOG_MEDIAN_SD**2, 0.0), (0.0, PRIOR_LOG_SIGMA_SD**2))
    start = np.array([PRIOR_LOG_MEDIAN_HOURS, PRIOR_LOG_SIGMA])
    if counts.size == 0 or float(counts.sum()) <= 0:
        return LogNormalShape(float(start[0]), float(np.exp(start[1])), prior_cov, 0.0)
    log_d, log_t, weights = _compress(delays, truncation, counts)
    # Start from the observed log-delays: the optimiser then needs a handful of steps.
    mean = float(np.average(log_d, weights=weights))
    spread = float(np.sqrt(np.average((log_d - mean) ** 2, weights=weights)))
    start = np.array([mean, np.log(np.clip(spread, 0.3, 4.0))])
    result = optimize.minimize(
        _negative_log_posterior,
        start,
        args=(log_d, log_t, weights),
        method="L-BFGS-B",
        bounds=[(-15.0, 15.0), (np.log(0.05), np.log(8.0))],
    )
    theta = np.asarray(result.x, dtype=np.float64)
    hess = _hessian(theta, log_d, log_t, weights)
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
