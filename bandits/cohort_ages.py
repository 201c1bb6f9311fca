"""F of a cohort whose decisions were made at different times: the mean of F over their ages.

A cohort (the decisions of one segment and arm in one exposure hour) is stored as its count,
the mean of its decisions' ages and their spread (standard deviation), not as the ages
themselves. F is concave over most of its range, so F at the mean age over-states the share of
a spread-out cohort's evidence that has arrived: a send at 10:00 and one at 10:45 read at 11:00
on email clocks (log-normal delays, median about an hour) have had about 0.31 of it, F at their
mean age says 0.35. Two-point quadrature at the mean plus and minus the spread matches the
first two moments of the ages, and is exact for a cohort of two equal sends.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def cohort_cdf(
    cdf: Callable[[ArrayLike], FloatArray], mean_ages: ArrayLike, spread: ArrayLike | None
) -> FloatArray:
    """(F(m - s) + F(m + s)) / 2 per cohort, the lower age clipped at 0; F(m) where ``spread``
    is None or 0. ``spread`` broadcasts against ``mean_ages``."""
    mean = np.asarray(mean_ages, dtype=np.float64)
    if spread is None:
        return np.asarray(cdf(mean), dtype=np.float64)
    s = np.broadcast_to(np.asarray(spread, dtype=np.float64), mean.shape)
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise ValueError("the spread of ages must be finite and non-negative")
    if not s.any():
        return np.asarray(cdf(mean), dtype=np.float64)
    return np.asarray((cdf(np.maximum(mean - s, 0.0)) + cdf(mean + s)) / 2.0, dtype=np.float64)
