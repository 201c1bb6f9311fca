"""A slow wave the data cannot see yet: how much of the eventual evidence may still be beyond
the oldest decision's age.

Right-truncated delays say nothing about delays longer than the oldest cohort's age: every
click of a push send read five seconds later came within two seconds, and that is what an
email send with a second, slower wave also shows five seconds in. The fit of
``bandits.delay_model`` extrapolates one log-normal (its pseudo-observations follow the fitted
shape, so beyond the observed ages nothing can hold more mass than the fit), and a
fast-and-slow mix read an hour in reported its final rate at half the truth with a
confident interval (covered in 1 run of 40).

Here the mass beyond is a prior that the data update. The delay is the fitted shape with
weight 1 - w and a slow log-normal G with weight w: G's median comes from the shape's own prior
(``bandits.delay_shape``: median one hour, sd 3 in log-hours) on a grid up to the window, its
spread is one of two values; there is such a wave at all with even odds, and its share w is
then Beta(1, 1.5). Each grid point's likelihood is that of the same right-truncated successes
(f(d) / F(age) per success). A single young send informs w only through the part of G it has
already shown; older cohorts whose successes all came early rule out a large w with a median
they have outlived (a push send with days of history is confident again). The posterior
gives, per arm, the share of its evidence that has arrived under each grid point: its lower
quantile bounds the reported maturity and raises the reported interval's upper end. The
central figures and the policy's posterior do not move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from bandits.delay_shape import (
    MIN_DELAY_HOURS,
    PRIOR_LOG_MEDIAN_HOURS,
    PRIOR_LOG_MEDIAN_SD,
    LogNormalShape,
    window_cdf,
)

FloatArray = NDArray[np.float64]

# Whether there is a slow wave at all: even odds. Without this "none" (w = 0 with prior mass
# of its own) and with medians beyond the window, a wave the data rule out at every share
# above a few hundredths lost its mass to waves the data cannot see (medians beyond the
# oldest age): a push send read a day later had a maturity low end of 0.34.
NO_WAVE = 0.5
# Its share w, if there is one: Beta(1, 1.5), on a grid of 20 midpoints. Measured on the
# fast-and-slow mix read an hour in (bench/delay/coverage.py, 40 runs): uniform covered 40
# of 40 at 7.6 times the policy's width (and 2-s clicks read at 5 s put 12% at 10% to 100%);
# Beta(1, 2) 34 of 40 at 4.0 times; Beta(1, 1.5) 38 of 40 at 5.3 times (10% to 75%).
WAVE_PRIOR = (1.0, 1.5)
WAVE_SHARES = np.concatenate(([0.0], (np.arange(20) + 0.5) / 20.0))
# The slow wave's log-median (hours) on a grid over the shape prior from -3 sd up to the
# window (``unseen_wave``: a wave is something that arrives inside the window), and its
# spread.
WAVE_LOG_MEDIANS = np.linspace(
    PRIOR_LOG_MEDIAN_HOURS - 3.0 * PRIOR_LOG_MEDIAN_SD,
    PRIOR_LOG_MEDIAN_HOURS + 3.0 * PRIOR_LOG_MEDIAN_SD,
    31,
)
WAVE_SIGMAS = (0.7, 1.5)
_GROUP_STEP = 0.05


@dataclass(frozen=True, eq=False)
class UnseenWave:
    """The posterior over (slow median and spread, share w): ``weights`` per component
    (rows) and share (columns), summing to one; ``components`` the (log-median, sigma) of
    each row."""

    components: tuple[tuple[float, float], ...]
    shares: FloatArray
    weights: FloatArray
    # Each component's CDF at ``edges`` (components, edges), interpolated between them as
    # ``bandits.delay.DelayCDF`` is: a cohort's share under every component is then one
    # matrix product (``arrived``), not a log-normal CDF per component and cohort.
    edges: FloatArray
    table: FloatArray

    def arrived(self, exposures: FloatArray, ages: FloatArray) -> FloatArray:
        """sum(n_c G(age_c)) over the cohorts (last axis) per component (first axis of the
        result, then the leading axes of ``exposures``)."""
        n = np.asarray(exposures, dtype=np.float64)
        a = np.clip(np.broadcast_to(ages, n.shape), 0.0, self.edges[-1])
        lead = n.shape[:-1]
        rows = int(np.prod(lead)) if lead else 1
        index = np.clip(np.searchsorted(self.edges, a, side="right") - 1, 0, self.edges.size - 2)
        width = self.edges[index + 1] - self.edges[index]
        upper = (a - self.edges[index]) / width
        row = np.broadcast_to(np.arange(rows).reshape(*lead, 1) if lead else 0, n.shape)
        nodes = self.edges.size
        keys = np.concatenate([(row * nodes + index).ravel(), (row * nodes + index + 1).ravel()])
        mass = np.concatenate([(n * (1.0 - upper)).ravel(), (n * upper).ravel()])
        weights = np.bincount(keys, weights=mass, minlength=rows * nodes).reshape(rows, nodes)
        out = weights @ self.table.T  # (rows, components)
        return np.asarray(np.moveaxis(out.reshape(*lead, -1), -1, 0), dtype=np.float64)

    def maturity_low(self, central: ArrayLike, wave: FloatArray, quantile: float) -> FloatArray:
        """The ``quantile`` of an arm's maturity over the posterior: (1 - w) x its maturity
        under the fit (``central``) + w x its maturity under the component (``wave``, one row
        per component, arms on the other axes)."""
        m = np.asarray(central, dtype=np.float64)
        shares = self.shares[None, :, None]
        values = (1.0 - shares) * m.reshape(1, 1, -1) + shares * wave.reshape(wave.shape[0], 1, -1)
        flat = values.reshape(-1, m.size)
        weights = np.broadcast_to(self.weights[:, :, None], values.shape).reshape(-1, m.size)
        order = np.argsort(flat, axis=0)
        sorted_values = np.take_along_axis(flat, order, axis=0)
        cumulative = np.cumsum(np.take_along_axis(weights, order, axis=0), axis=0)
        index = np.argmax(cumulative >= quantile, axis=0)
        low = sorted_values[index, np.arange(m.size)]
        return np.asarray(np.minimum(low, m.ravel()).reshape(m.shape), dtype=np.float64)


def _group(values: FloatArray, counts: FloatArray) -> tuple[FloatArray, FloatArray]:
    keys = np.rint(values / _GROUP_STEP).astype(np.int64)
    unique, inverse = np.unique(keys, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights=counts, minlength=unique.size)
    return np.asarray(unique * _GROUP_STEP, np.float64), np.asarray(weights, np.float64)


def _log_window_pdf(
    log_d: FloatArray, window_hours: float, mu: FloatArray, sigma: FloatArray
) -> FloatArray:
    """log of the log-delay's density, conditioned on delay <= window; ``mu`` and ``sigma``
    (one per component, a column) broadcast against ``log_d``."""
    z = (log_d - mu) / sigma
    log_all = special.log_ndtr((np.log(window_hours) - mu) / sigma)
    return np.asarray(-0.5 * z**2 - np.log(sigma) - 0.5 * np.log(2 * np.pi) - log_all)


def _log_window_cdf(
    log_t: FloatArray, window_hours: float, mu: FloatArray, sigma: FloatArray
) -> FloatArray:
    """log F of the log-normal conditioned on the window, at log-ages below it."""
    log_all = special.log_ndtr((np.log(window_hours) - mu) / sigma)
    return np.asarray(np.minimum(special.log_ndtr((log_t - mu) / sigma) - log_all, 0.0))


def wave_cdfs(
    ages: FloatArray, window_hours: float, components: tuple[tuple[float, float], ...]
) -> FloatArray:
    """Each component's CDF (conditioned on the window) at ``ages``: (components, *ages)."""
    params = np.asarray(components, dtype=np.float64)
    shape = (len(components),) + (1,) * np.ndim(ages)
    mu, sigma = params[:, 0].reshape(shape), params[:, 1].reshape(shape)
    return window_cdf(np.asarray(ages, dtype=np.float64)[None], window_hours, mu, sigma)  # type: ignore[arg-type]


def unseen_wave(
    delays: FloatArray,
    truncation: FloatArray,
    counts: FloatArray,
    shape: LogNormalShape,
    window_hours: float,
    grid_hours: FloatArray,
) -> UnseenWave:
    """The posterior of the slow wave (see the module docstring) given right-truncated
    successes (``truncation``: each one's cohort age, capped at the window); each
    component's CDF is kept on ``grid_hours`` (0 to the window, the delay CDF's own)."""
    medians = WAVE_LOG_MEDIANS[WAVE_LOG_MEDIANS <= np.log(window_hours)]
    if medians.size == 0:
        medians = np.array([float(np.log(window_hours))])
    components = tuple((float(m), float(s)) for m in medians for s in WAVE_SIGMAS)
    prior_median = stats.norm.pdf(medians, PRIOR_LOG_MEDIAN_HOURS, PRIOR_LOG_MEDIAN_SD)
    log_prior = np.log(
        np.repeat(prior_median / prior_median.sum() / len(WAVE_SIGMAS), len(WAVE_SIGMAS))
    )
    slab = stats.beta.pdf(WAVE_SHARES[1:], *WAVE_PRIOR)
    log_prior_share = np.log(np.concatenate(([NO_WAVE], (1.0 - NO_WAVE) * slab / slab.sum())))
    log_post = log_prior[:, None] + log_prior_share[None, :]
    if float(counts.sum()) > 0:
        floor = np.maximum(delays, MIN_DELAY_HOURS)
        log_d, w_d = _group(np.log(floor), counts)
        log_t, w_t = _group(np.log(np.maximum(np.minimum(truncation, window_hours), floor)), counts)
        params = np.asarray(components, dtype=np.float64)
        mu, sigma = params[:, :1], params[:, 1:]
        # (components, shares, groups): log((1 - w) f + w g) = log f + log(1 - w + w g / f),
        # with the ratio taken once per component (a log per cell, not a logaddexp).
        w = WAVE_SHARES[None, :, None]
        fit_f = _log_window_pdf(log_d, window_hours, np.array(shape.mu), np.array(shape.sigma))
        fit_big_f = _log_window_cdf(log_t, window_hours, np.array(shape.mu), np.array(shape.sigma))
        ratio_f = np.exp(np.minimum(_log_window_pdf(log_d, window_hours, mu, sigma) - fit_f, 600))
        ratio_big_f = np.exp(
            np.minimum(_log_window_cdf(log_t, window_hours, mu, sigma) - fit_big_f, 600)
        )
        top = np.log(1.0 - w + w * ratio_f[:, None, :]) @ w_d
        bottom = np.log(1.0 - w + w * ratio_big_f[:, None, :]) @ w_t
        log_post += top - bottom
    weights = np.exp(log_post - log_post.max())
    edges = np.asarray(grid_hours, dtype=np.float64)
    table = wave_cdfs(edges, window_hours, components)
    return UnseenWave(components, WAVE_SHARES.copy(), weights / weights.sum(), edges, table)
