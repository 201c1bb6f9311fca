"""Beta posteriors over per-arm success rates, and the weak pooled prior.

Counts may be *effective* (delay-corrected, decayed) floats, so nothing here
assumes integers; it only insists on finite, non-negative, same-shaped arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import stats

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ArrayLike = npt.ArrayLike
_Array = TypeVar("_Array", bound=np.ndarray[Any, Any])


def read_only(array: _Array) -> _Array:
    """Mark an array read-only: results are shared across requests and must not drift."""
    array.setflags(write=False)
    return array


def as_counts(name: str, values: ArrayLike, *, size: int | None = None) -> FloatArray:
    """One-dimensional, finite, non-negative float counts, or a ValueError naming them."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if size is not None and array.shape[0] != size:
        raise ValueError(f"{name} has {array.shape[0]} arms, expected {size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    if np.any(array < 0):
        raise ValueError(f"{name} must be non-negative")
    return array


def validate_counts(successes: ArrayLike, exposures: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Checked (successes, exposures), successes clipped to [0, exposures].

    Clipping rather than refusing: with delay correction an arm's effective
    exposures can fall just below its (undiscounted) successes, and DESIGN.md
    asks that successes never exceed effective exposures.
    """
    exposures_array = as_counts("exposures", exposures)
    successes_array = as_counts("successes", successes, size=exposures_array.shape[0])
    return np.minimum(successes_array, exposures_array), exposures_array


def _as_prior(name: str, value: ArrayLike, size: int) -> FloatArray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim > 1 or (array.ndim == 1 and array.shape[0] != size):
        raise ValueError(f"{name} must be a scalar or have {size} arms, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must be finite and > 0")
    return np.broadcast_to(array, (size,)).astype(np.float64)


@dataclass(frozen=True, eq=False)
class BetaPosterior:
    """Per-arm Beta(alpha, beta) posteriors (read-only arrays, one entry per arm)."""

    alpha: FloatArray
    beta: FloatArray

    @property
    def mean(self) -> FloatArray:
        return self.alpha / (self.alpha + self.beta)

    def credible_interval(self, level: float = 0.95) -> tuple[FloatArray, FloatArray]:
        """Equal-tailed interval: the (1-level)/2 and (1+level)/2 quantiles per arm."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        tail = (1.0 - level) / 2.0
        low = np.asarray(stats.beta.ppf(tail, self.alpha, self.beta), dtype=np.float64)
        high = np.asarray(stats.beta.ppf(1.0 - tail, self.alpha, self.beta), dtype=np.float64)
        return low, high


def beta_posterior(
    successes: ArrayLike, exposures: ArrayLike, prior_alpha: ArrayLike, prior_beta: ArrayLike
) -> BetaPosterior:
    """Beta(prior_alpha + s, prior_beta + n - s) for each arm."""
    successes_array, exposures_array = validate_counts(successes, exposures)
    size = exposures_array.shape[0]
    alpha = _as_prior("prior_alpha", prior_alpha, size) + successes_array
    beta = _as_prior("prior_beta", prior_beta, size) + (exposures_array - successes_array)
    return BetaPosterior(alpha=read_only(alpha), beta=read_only(beta))


def pooled_prior(
    successes: ArrayLike, exposures: ArrayLike, strength: float
) -> tuple[float, float]:
    """A weak Beta prior centred on the pooled rate of all arms, worth ``strength`` observations.

    The pooled rate is smoothed by half a success in one exposure (a Jeffreys-
    style pseudo-count): with no data the prior is Beta(strength/2,
    strength/2), uniform at the default strength 2; with data but no successes
    the centre is small but never 0, so both parameters stay > 0 and a new arm
    is not believed to be certainly worthless.
    """
    if not (np.isfinite(strength) and strength > 0):
        raise ValueError(f"strength must be finite and > 0, got {strength!r}")
    successes_array, exposures_array = validate_counts(successes, exposures)
    rate = (float(successes_array.sum()) + 0.5) / (float(exposures_array.sum()) + 1.0)
    return strength * rate, strength * (1.0 - rate)
