"""Is there a second, slower delay component? A two-log-normal fit against one, by BIC.

The tail fit of ``bandits.delay_model`` (a log-normal on the slowest tenth of the delays)
always disagrees somewhat with the fit to all of them, so "the fits disagree" fired for 87%
of young log-normal data. Whether a second component is real is a question for the
likelihood: a mixture of two log-normals is fitted to the same right-truncated delays (each
success could be seen only if its delay is at most its cohort's age), and it must beat the
single log-normal by BIC, 2 (l2 - l1) > 3 ln(successes), for three more parameters.

What no test can do: a slow component that has not begun to arrive (a fast-and-slow mix read
an hour in, when a twentieth of the slow half has shown) leaves data that one log-normal fits
as well as two. The evidence then says "one log-normal", and it is right about the data.

Successes known only through a sample of the newest (left-truncated) are left out of the
test: they inform the tail fit, not the question asked here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from bandits.delay_shape import MIN_DELAY_HOURS, FloatArray, LogNormalShape

# Below this many successes the test is not run: BIC's penalty (3 ln n) and the mixture's
# own instability on few points make it meaningless, and the tail fit needs ten in its tenth.
MIN_SUCCESSES = 100.0
# Where the two components start, in units of the single fit's spread either side of its
# median: one split at the middle, one with a slow minority (a tail).
STARTS = ((-1.0, 1.0), (-0.5, 2.0))
MAX_ITERATIONS = 40
# A verdict is reused until the successes grow by more than this share (``still_holds``).
REUSE_GROWTH = 0.1
# Component spreads are kept within these (in log-hours): a component narrower than this
# would fit a single busy second of a log, not a delay distribution.
SIGMA_BOUNDS = (0.2, 4.0)
# Delays and truncations grouped on a 5% grid of log-hours (a component is at least 0.2
# wide): about 200 groups for a week's window, a tenth of a millisecond per evaluation.
GROUP_STEP = 0.05
_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))
_LOG_SIGMA = (float(np.log(SIGMA_BOUNDS[0])), float(np.log(SIGMA_BOUNDS[1])))
_LOWER = np.array([-15.0, _LOG_SIGMA[0], -15.0, _LOG_SIGMA[0], -6.0])
_UPPER = np.array([15.0, _LOG_SIGMA[1], 15.0, _LOG_SIGMA[1], 6.0])


@dataclass(frozen=True)
class MixtureEvidence:
    """The BIC difference (positive: the mixture wins) and the two fits behind it.

    ``weight_slow`` is the share of the slower component (by median), ``slow`` its
    (log-median, sigma); ``None`` for both when the test was not run.
    """

    bic_difference: float
    successes: float
    weight_slow: float | None = None
    slow: tuple[float, float] | None = None

    @property
    def mixed(self) -> bool:
        return bool(self.bic_difference > 0.0)

    def still_holds(self, successes: float) -> bool:
        """Whether this verdict can stand for ``successes`` successes: at most a tenth more
        than it was reached on (BIC's difference grows with the data, so a verdict rarely
        flips on a tenth more; rerunning the test on every refresh would multiply the fit's
        cost several times)."""
        return bool(self.successes <= successes <= self.successes * (1.0 + REUSE_GROWTH))

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "bic_difference": round(self.bic_difference, 3)
            if np.isfinite(self.bic_difference)
            else None,
            "successes": self.successes,
        }
        if self.slow is not None and self.weight_slow is not None:
            out["weight_slow"] = round(self.weight_slow, 4)
            out["slow_median_hours"] = round(float(np.exp(self.slow[0])), 6)
            out["slow_sigma"] = round(self.slow[1], 4)
        return out

    @classmethod
    def from_json(cls, data: object) -> MixtureEvidence | None:
        """The verdict a snapshot's ``delay.mixture`` block stored; None if absent or bad."""
        if not isinstance(data, dict):
            return None
        try:
            difference = data.get("bic_difference")
            slow = (
                (float(np.log(data["slow_median_hours"])), float(data["slow_sigma"]))
                if "slow_median_hours" in data
                else None
            )
            return cls(
                float("-inf") if difference is None else float(difference),
                float(data["successes"]),
                float(data["weight_slow"]) if "weight_slow" in data else None,
                slow,
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class _Grouped:
    log_delays: FloatArray
    delay_weights: FloatArray
    log_truncations: FloatArray
    truncation_weights: FloatArray


def _group(values: FloatArray, counts: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Log-values on a grid of GROUP_STEP: the test's cost no longer grows with the data."""
    keys = np.rint(values / GROUP_STEP).astype(np.int64)
    unique, inverse = np.unique(keys, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights=counts, minlength=unique.size)
    return np.asarray(unique * GROUP_STEP, np.float64), np.asarray(weights, np.float64)


def _negative_log_likelihood(theta: FloatArray, data: _Grouped) -> tuple[float, FloatArray]:
    """-log L of (mu_1, log sigma_1, [mu_2, log sigma_2, logit w_1]) and its gradient.

    log L = sum_d log f(d) - sum_t log F(t): right truncation, as in ``bandits.delay_shape``.
    """
    k = 1 if theta.size == 2 else 2
    # Clipped so that the unbounded optimiser's trial steps stay finite and each spread stays
    # within SIGMA_BOUNDS (the gradient is zero beyond, so the optimum stays inside).
    theta = np.clip(theta, _LOWER[: theta.size], _UPPER[: theta.size])
    mus = theta[[0, 2]] if k == 2 else theta[:1]
    log_sigmas = theta[[1, 3]] if k == 2 else theta[1:2]
    sigmas = np.exp(log_sigmas)
    if k == 2:
        w1 = float(1.0 / (1.0 + np.exp(-theta[4])))
        log_w = np.log(np.array([w1, 1.0 - w1]) + 1e-300)
    else:
        w1 = 1.0
        log_w = np.zeros(1)
    z = (data.log_delays[None, :] - mus[:, None]) / sigmas[:, None]
    terms = log_w[:, None] - 0.5 * z**2 - log_sigmas[:, None] - _HALF_LOG_2PI
    # np.logaddexp, not scipy's logsumexp: the latter's dispatch cost 1.5 ms a call here.
    log_f = terms[0] if k == 1 else np.logaddexp(terms[0], terms[1])
    r = np.exp(terms - log_f[None, :])  # responsibilities
    u = (data.log_truncations[None, :] - mus[:, None]) / sigmas[:, None]
    log_cdf = special.log_ndtr(u)
    t_terms = log_w[:, None] + log_cdf
    log_big_f = t_terms[0] if k == 1 else np.logaddexp(t_terms[0], t_terms[1])
    q = np.exp(t_terms - log_big_f[None, :])
    mills = np.exp(-0.5 * u**2 - _HALF_LOG_2PI - log_cdf)
    wd, wt = data.delay_weights, data.truncation_weights
    value = -float((wd * log_f).sum()) + float((wt * log_big_f).sum())
    # d log f / d mu_k = r_k z_k / s_k; d log F / d mu_k = -q_k mills_k / s_k; and so on.
    g_mu = -(r * z * wd).sum(axis=1) / sigmas - (q * mills * wt).sum(axis=1) / sigmas
    g_ls = -(r * (z**2 - 1.0) * wd).sum(axis=1) - (q * mills * u * wt).sum(axis=1)
    if k == 1:
        return value, np.array([g_mu[0], g_ls[0]])
    g_a = -float(((r[0] - w1) * wd).sum()) + float(((q[0] - w1) * wt).sum())
    return value, np.array([g_mu[0], g_ls[0], g_mu[1], g_ls[1], g_a])


def mixture_evidence(
    delays: FloatArray, truncation: FloatArray, counts: FloatArray, whole: LogNormalShape
) -> MixtureEvidence:
    """BIC of two log-normals against one on right-truncated delays (see the module
    docstring); ``whole`` (the single fit) is where both optimisations start."""
    n = float(counts.sum())
    if n < MIN_SUCCESSES:
        return MixtureEvidence(float("-inf"), n)
    floor = np.maximum(delays, MIN_DELAY_HOURS)
    log_d, w_d = _group(np.log(floor), counts)
    log_t, w_t = _group(np.log(np.maximum(truncation, floor)), counts)
    data = _Grouped(log_d, w_d, log_t, w_t)
    # BFGS on the clipped objective: L-BFGS-B's bound handling cost more than the fit.
    # At most MAX_ITERATIONS steps per start: on one-log-normal data the mixture's likelihood
    # is nearly flat along the second component and BFGS wanders; a stopped fit only
    # understates the mixture's likelihood, so the test stays on the cautious side.
    options = {"gtol": 1e-3, "maxiter": MAX_ITERATIONS}
    single = optimize.minimize(
        _negative_log_likelihood,
        np.clip([whole.mu, np.log(whole.sigma)], _LOWER[:2], _UPPER[:2]),
        args=(data,),
        jac=True,
        method="BFGS",
        options=options,
    )
    best = None
    s = float(np.exp(np.clip(single.x[1], *_LOG_SIGMA)))
    for low, high in STARTS:
        start = np.array(
            [
                single.x[0] + low * s,
                float(np.clip(np.log(0.6 * s), *_LOG_SIGMA)),
                single.x[0] + high * s,
                float(np.clip(np.log(0.6 * s), *_LOG_SIGMA)),
                0.0,
            ]
        )
        result = optimize.minimize(
            _negative_log_likelihood,
            start,
            args=(data,),
            jac=True,
            method="BFGS",
            options=options,
        )
        if best is None or result.fun < best.fun:
            best = result
    assert best is not None
    difference = 2.0 * (float(single.fun) - float(best.fun)) - 3.0 * float(np.log(n))
    x = np.clip(best.x, _LOWER, _UPPER)
    w1 = float(special.expit(x[4]))
    slow_first = x[0] > x[2]
    slow = (float(x[0]), float(np.exp(x[1]))) if slow_first else (float(x[2]), float(np.exp(x[3])))
    return MixtureEvidence(difference, n, w1 if slow_first else 1.0 - w1, slow)
