"""Baseline policies for the regret benchmark: uniform, epsilon-greedy, pure Thompson.

Each returns an allocation, a probability vector over the live arms in the
order given, like the engine's own policy, so the simulator can serve any of
them through the same path and log exact propensities.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _counts(successes: npt.ArrayLike, exposures: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    # Floats, not ints: delay-corrected exposures are fractional.
    success = np.asarray(successes, dtype=np.float64)
    exposure = np.asarray(exposures, dtype=np.float64)
    if success.ndim != 1 or success.size == 0:
        raise ValueError("successes: must be a non-empty one-dimensional array")
    if exposure.shape != success.shape:
        raise ValueError(
            f"exposures: length {exposure.size} does not match successes ({success.size})"
        )
    if not np.all(np.isfinite(success)) or np.any(success < 0.0):
        raise ValueError("successes: must be finite and >= 0")
    if not np.all(np.isfinite(exposure)) or np.any(exposure < 0.0):
        raise ValueError("exposures: must be finite and >= 0")
    if np.any(success > exposure):
        raise ValueError("successes: must not exceed exposures")
    return success, exposure


def uniform_allocation(k: int) -> FloatArray:
    """An even split over k arms."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k: must be an integer >= 1, got {k!r}")
    return np.full(int(k), 1.0 / int(k))


def epsilon_greedy_allocation(
    successes: npt.ArrayLike, exposures: npt.ArrayLike, epsilon: float = 0.1
) -> FloatArray:
    """epsilon/K to every arm, the other 1 - epsilon to the best observed rate.

    An arm with no exposures is estimated at 0 (the textbook initial value),
    so a new arm gets only the exploration share until it is seen. Leaders
    tied on their observed rate split the greedy share evenly, which makes
    the first allocation uniform.
    """
    success, exposure = _counts(successes, exposures)
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon: must be in [0, 1], got {epsilon!r}")
    rate = np.divide(success, exposure, out=np.zeros_like(success), where=exposure > 0.0)
    leaders = rate == rate.max()
    k = success.size
    greedy = (1.0 - epsilon) * leaders / leaders.sum()
    return np.asarray(np.full(k, epsilon / k) + greedy, dtype=np.float64)


def thompson_allocation(
    successes: npt.ArrayLike,
    exposures: npt.ArrayLike,
    rng: np.random.Generator,
    draws: int = 4000,
) -> FloatArray:
    """Pure Thompson sampling: P(arm is best) under Beta(1 + s, 1 + n - s) posteriors.

    No exploration share and no warm-up floors: the reference point for what
    those cost. Estimated from ``draws`` joint posterior draws, so an arm
    that never wins a draw gets exactly zero.
    """
    success, exposure = _counts(successes, exposures)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: must be a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
        raise ValueError(f"draws: must be an integer >= 1, got {draws!r}")
    samples = rng.beta(1.0 + success, 1.0 + exposure - success, size=(int(draws), success.size))
    wins = np.bincount(np.argmax(samples, axis=1), minlength=success.size)
    return np.asarray(wins / wins.sum(), dtype=np.float64)
