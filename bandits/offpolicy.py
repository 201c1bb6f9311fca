"""Off-policy evaluation from logged decisions with exact propensities.

What would another policy (uniform, a fixed arm, the current allocation) have
earned on the decisions we actually logged? Importance weighting answers it
because every decision stores the exact probability with which its arm was
drawn (DESIGN.md, "Evaluation").

Inputs are per *logged decision* i: the reward observed, ``logged_propensity``
p_i (the probability the logging policy gave the arm it chose; > 0 since it
was chosen) and ``target_probability`` q_i (the probability the target policy
gives that same arm in the same context). The importance weight is
w_i = q_i / p_i.

Support: importance weighting can only see arms the log could have chosen.
If the target puts mass on an arm the logging policy gave zero probability
(a suspended arm, an arm added after the decision, a retired one), that part
of its value is invisible to every estimator here. Those decisions carry no
trace of it in (r, p, q), so the caller, who knows both policies, passes
``target_mass_on_logged_arms``: per decision, the target's total probability
on the arms the logging policy gave positive probability. The estimate has
support when the average missing mass, mean(1 - m_i), is at most
``support_tolerance`` and the target puts weight on at least one logged
decision. Without support the value is NaN rather than a biased number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike
Estimator = Callable[[ArrayLike, ArrayLike, ArrayLike], float]

# Bootstrap resamples are drawn in blocks of at most this many cells
# (resamples x decisions) so that a million-decision log does not need a
# gigabyte of indices.
_BLOCK_CELLS = 2_000_000


@dataclass(frozen=True, slots=True)
class Estimate:
    """An off-policy estimate of a target policy's mean reward per decision.

    ``effective_sample_size`` is Kish's (sum w)^2 / sum w^2: how many
    on-policy decisions the weighted log is worth. ``value`` and the interval
    are NaN when ``support`` is False.
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    support: bool
    effective_sample_size: float
    level: float


@dataclass(frozen=True, slots=True)
class Interval:
    """A point value with a bootstrap interval at the enclosing result's level."""

    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Lift:
    """What the policy earned against an even split, on the same decisions.

    ``policy`` is the mean reward the policy earned; ``uniform`` the
    self-normalised estimate of what a uniform split over the live arms would
    have earned; ``difference`` = policy - uniform; ``relative`` =
    difference / uniform; ``successes_gained`` = n * difference. Every
    interval comes from one bootstrap over decisions, so they are consistent.
    """

    n: int
    level: float
    policy: Interval
    uniform: Interval
    difference: Interval
    relative: Interval
    successes_gained: Interval
    support: bool
    effective_sample_size: float


def _as_vector(name: str, values: ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name}: must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: must be finite (no NaN or inf)")
    return array


def _validated(
    rewards: ArrayLike,
    logged_propensity: ArrayLike,
    target_probability: ArrayLike,
    target_name: str = "target_probability",
) -> tuple[FloatArray, FloatArray, FloatArray]:
    reward = _as_vector("rewards", rewards)
    propensity = _as_vector("logged_propensity", logged_propensity)
    target = _as_vector(target_name, target_probability)
    if propensity.shape != reward.shape:
        raise ValueError(
            f"logged_propensity: length {propensity.size} does not match rewards ({reward.size})"
        )
    if target.shape != reward.shape:
        raise ValueError(
            f"{target_name}: length {target.size} does not match rewards ({reward.size})"
        )
    if np.any(propensity <= 0.0) or np.any(propensity > 1.0):
        raise ValueError("logged_propensity: must be in (0, 1] for every logged decision")
    if np.any(target < 0.0) or np.any(target > 1.0):
        raise ValueError(f"{target_name}: must be in [0, 1]")
    return reward, propensity, target


def _require_decisions(reward: FloatArray) -> None:
    if reward.size == 0:
        raise ValueError("rewards: need at least one logged decision")


def ips(rewards: ArrayLike, logged_propensity: ArrayLike, target_probability: ArrayLike) -> float:
    """Inverse propensity scoring: mean of w_i * r_i. Unbiased under support."""
    reward, propensity, target = _validated(rewards, logged_propensity, target_probability)
    _require_decisions(reward)
    return float(np.mean(reward * target / propensity))


def snips(rewards: ArrayLike, logged_propensity: ArrayLike, target_probability: ArrayLike) -> float:
    """Self-normalised IPS: sum(w r) / sum(w); NaN when every weight is zero.

    Slightly biased, but its variance is far lower than IPS when a few
    decisions carry large weights, and it always lies within the reward range.
    """
    reward, propensity, target = _validated(rewards, logged_propensity, target_probability)
    _require_decisions(reward)
    weight = target / propensity
    total = float(np.sum(weight))
    return float(np.sum(weight * reward) / total) if total > 0.0 else float("nan")


def effective_sample_size(logged_propensity: ArrayLike, target_probability: ArrayLike) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 of the importance weights."""
    propensity = _as_vector("logged_propensity", logged_propensity)
    target = _as_vector("target_probability", target_probability)
    if target.shape != propensity.shape:
        raise ValueError(
            f"target_probability: length {target.size} does not match "
            f"logged_propensity ({propensity.size})"
        )
    if np.any(propensity <= 0.0) or np.any(propensity > 1.0):
        raise ValueError("logged_propensity: must be in (0, 1] for every logged decision")
    weight = target / propensity
    squares = float(np.sum(weight * weight))
    return float(np.sum(weight) ** 2 / squares) if squares > 0.0 else 0.0


def _check_bootstrap(rng: object, n_boot: int, level: float) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: must be a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 2:
        raise ValueError(f"n_boot: must be an integer >= 2, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level!r}")


def _resample_sums(
    columns: FloatArray, rng: np.random.Generator, n_boot: int
) -> npt.NDArray[np.float64]:
    """Sums of each column over n_boot resamples of the rows (decisions).

    Returns shape (n_boot, columns.shape[1]). Estimators that are ratios of
    sums (IPS, SNIPS, the lift) need nothing else from a resample.
    """
    n = columns.shape[0]
    sums = np.empty((n_boot, columns.shape[1]), dtype=np.float64)
    block = max(1, _BLOCK_CELLS // max(n, 1))
    by_column = np.ascontiguousarray(columns.T)
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        index = rng.integers(0, n, size=(stop - start, n))
        for j, column in enumerate(by_column):
            # A 1-D take per column is several times faster than one 2-D gather.
            sums[start:stop, j] = np.take(column, index).sum(axis=1)
    return sums


def _percentile_interval(samples: FloatArray, level: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    # A resample with no weight on the target has no SNIPS value; if that is
    # common the interval would describe only the lucky resamples.
    if finite.size < 0.5 * samples.size:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    safe = np.where(denominator > 0.0, denominator, 1.0)
    return np.where(denominator > 0.0, numerator / safe, np.nan)


def bootstrap_interval(
    estimator: Estimator,
    rewards: ArrayLike,
    logged_propensity: ArrayLike,
    target_probability: ArrayLike,
    *,
    rng: np.random.Generator,
    n_boot: int = 1000,
    level: float = 0.90,
) -> tuple[float, float]:
    """Percentile bootstrap interval for an estimator, resampling decisions.

    Decisions are resampled with replacement, which treats them as
    exchangeable. Under adaptive logging they are not independent, but the
    importance-weighted terms still form a martingale difference sequence,
    so the resampled spread tracks the estimator's real spread far better
    than a normal-theory interval built from per-arm counts, which ignores
    the weights entirely. It is still a little optimistic when the logging
    policy starved the target's arms: on Thompson-logged synthetic logs of
    2,000 decisions, 90% intervals covered 88-92% for uniform and the leading
    arm but 85-87% for a losing arm held at its exploration floor (300
    seeds). Adaptive weighting (Hadad et al., 2021) would close that gap.
    ``ips`` and ``snips`` are resampled in vectorised
    blocks; any other callable with the same signature is called once per
    resample.
    """
    reward, propensity, target = _validated(rewards, logged_propensity, target_probability)
    _require_decisions(reward)
    _check_bootstrap(rng, n_boot, level)
    weight = target / propensity
    n = reward.size
    if estimator is ips or estimator is snips:
        sums = _resample_sums(np.column_stack([weight * reward, weight]), rng, n_boot)
        if estimator is ips:
            samples = sums[:, 0] / n
        else:
            samples = _ratio(sums[:, 0], sums[:, 1])
    else:
        samples = np.empty(n_boot, dtype=np.float64)
        for b in range(n_boot):
            index = rng.integers(0, n, size=n)
            samples[b] = estimator(reward[index], propensity[index], target[index])
    return _percentile_interval(samples, level)


def _missing_mass(name: str, value: ArrayLike | None, n: int) -> float:
    if value is None:
        return 0.0
    mass = np.asarray(value, dtype=np.float64)
    if mass.ndim == 0:
        mass = np.full(n, float(mass))
    if mass.ndim != 1 or mass.size != n:
        raise ValueError(f"{name}: must be a scalar or one value per decision ({n})")
    if not np.all(np.isfinite(mass)) or np.any(mass < 0.0) or np.any(mass > 1.0):
        raise ValueError(f"{name}: must be in [0, 1]")
    return float(np.mean(1.0 - mass)) if n else 0.0


def off_policy_estimate(
    estimator: Estimator,
    rewards: ArrayLike,
    logged_propensity: ArrayLike,
    target_probability: ArrayLike,
    *,
    rng: np.random.Generator,
    target_mass_on_logged_arms: ArrayLike | None = None,
    n_boot: int = 1000,
    level: float = 0.90,
    support_tolerance: float = 1e-6,
) -> Estimate:
    """The target policy's value by ``estimator`` (``ips`` or ``snips``) with its interval.

    ``target_mass_on_logged_arms`` (scalar or per decision, default 1.0):
    the target's total probability on the arms the logging policy could
    have chosen at that decision. For a fixed arm it is 1 where the arm had
    positive logging probability and 0 elsewhere; for uniform over K live
    arms of which one was suspended, (K-1)/K. An empty log, a target with no
    weight on any logged decision, or an average missing mass above
    ``support_tolerance`` give ``support=False`` and NaN values.
    """
    reward, propensity, target = _validated(rewards, logged_propensity, target_probability)
    _check_bootstrap(rng, n_boot, level)
    if not 0.0 <= support_tolerance < 1.0:
        raise ValueError(f"support_tolerance: must be in [0, 1), got {support_tolerance!r}")
    n = reward.size
    missing = _missing_mass("target_mass_on_logged_arms", target_mass_on_logged_arms, n)
    ess = effective_sample_size(propensity, target)
    if n == 0 or missing > support_tolerance or not np.any(target > 0.0):
        nan = float("nan")
        return Estimate(nan, nan, nan, n, False, ess, level)
    value = estimator(reward, propensity, target)
    low, high = bootstrap_interval(
        estimator, reward, propensity, target, rng=rng, n_boot=n_boot, level=level
    )
    return Estimate(value, low, high, n, True, ess, level)


def lift_over_even_split(
    rewards: ArrayLike,
    logged_propensity: ArrayLike,
    uniform_probability: ArrayLike,
    rng: np.random.Generator,
    n_boot: int = 1000,
    *,
    level: float = 0.90,
    uniform_mass_on_logged_arms: ArrayLike | None = None,
    support_tolerance: float = 1e-6,
) -> Lift:
    """The policy's mean reward against a uniform split's, on the same matured decisions.

    ``uniform_probability`` is 1/K_i per decision (K_i live arms when it was
    made; a scalar broadcasts). The uniform value is estimated by SNIPS on
    the exact logged propensities. Only matured decisions (older than the
    attribution window) belong here: a young decision's missing click would
    bias both sides down, but not equally.

    The interval resamples decisions with replacement and recomputes both
    sides on each resample. Adaptively collected data make normal-theory
    intervals too narrow: the policy's allocation depends on earlier
    rewards, so per-arm counts are not binomial samples of fixed size, and
    the importance weights add variance a binomial interval ignores.
    """
    reward = _as_vector("rewards", rewards)
    uniform = np.asarray(uniform_probability, dtype=np.float64)
    if uniform.ndim == 0:
        uniform = np.full(reward.size, float(uniform))
    reward, propensity, uniform = _validated(
        reward, logged_propensity, uniform, "uniform_probability"
    )
    _check_bootstrap(rng, n_boot, level)
    if not 0.0 <= support_tolerance < 1.0:
        raise ValueError(f"support_tolerance: must be in [0, 1), got {support_tolerance!r}")
    n = reward.size
    missing = _missing_mass("uniform_mass_on_logged_arms", uniform_mass_on_logged_arms, n)
    ess = effective_sample_size(propensity, uniform)
    nan = float("nan")
    if n == 0 or missing > support_tolerance or not np.any(uniform > 0.0):
        empty = Interval(nan, nan, nan)
        policy_value = float(np.mean(reward)) if n else nan
        return Lift(
            n, level, Interval(policy_value, nan, nan), empty, empty, empty, empty, False, ess
        )

    weight = uniform / propensity
    columns = np.column_stack([reward, weight * reward, weight])
    totals = columns.sum(axis=0, keepdims=True)
    sums = np.vstack([totals, _resample_sums(columns, rng, n_boot)])
    policy = sums[:, 0] / n
    uniform_value = _ratio(sums[:, 1], sums[:, 2])
    difference = policy - uniform_value
    relative = _ratio(difference, uniform_value)

    def interval(samples: FloatArray) -> Interval:
        low, high = _percentile_interval(samples[1:], level)
        return Interval(float(samples[0]), low, high)

    return Lift(
        n=n,
        level=level,
        policy=interval(policy),
        uniform=interval(uniform_value),
        difference=interval(difference),
        relative=interval(relative),
        successes_gained=interval(n * difference),
        support=True,
        effective_sample_size=ess,
    )
