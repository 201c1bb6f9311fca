"""The loop's value against a holdout: the served policy's success rate minus the rate of
units held out of it (always the control arm), with an interval, and the successes gained.

Why per unit? A held-out person stays held out for every send, so the decisions of one unit
are not independent: a unit that clicks often clicks in both groups. The rates are ratios
of per-unit sums, and their variance is the cluster-robust (linearised ratio) variance over
units, not the binomial one over decisions, which would be too narrow whenever units get
several sends. The interval on the difference is normal on that variance: the groups are
independent by construction (a unit's group comes from a hash of the unit), and each has
many units.

Gained successes: the difference times the served decisions, i.e. what the served
decisions earned beyond what the control arm would have earned on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

MIN_UNITS = 2


@dataclass(frozen=True, slots=True)
class GroupRate:
    units: int
    decisions: int
    successes: int
    rate: float
    std_error: float


@dataclass(frozen=True, slots=True)
class HoldoutLift:
    served: GroupRate
    holdout: GroupRate
    lift: float  # served rate - holdout rate (absolute)
    ci_low: float
    ci_high: float
    relative_lift: float | None  # lift / holdout rate (None when the holdout rate is 0)
    gained: float  # successes gained by the served decisions over the control arm
    gained_low: float
    gained_high: float
    level: float


def group_rate(successes: ArrayLike, decisions: ArrayLike) -> GroupRate:
    """The ratio of per-unit sums and its cluster-robust standard error."""
    y = np.asarray(successes, dtype=np.float64)
    n = np.asarray(decisions, dtype=np.float64)
    _check(y, n)
    units = int(n.size)
    total = float(n.sum())
    rate = float(y.sum() / total) if total > 0 else 0.0
    if units < MIN_UNITS or total <= 0:
        return GroupRate(units, int(total), int(y.sum()), rate, float("nan"))
    residual = y - rate * n
    variance = units / (units - 1) * float(np.sum(residual**2)) / total**2
    return GroupRate(units, int(total), int(y.sum()), rate, float(np.sqrt(variance)))


def holdout_lift(
    served_successes: ArrayLike,
    served_decisions: ArrayLike,
    holdout_successes: ArrayLike,
    holdout_decisions: ArrayLike,
    *,
    level: float = 0.95,
) -> HoldoutLift | None:
    """Lift of the served policy over the holdout; None without two units in each group.

    One entry per unit in each group: its decisions and its successes among them.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    served = group_rate(served_successes, served_decisions)
    holdout = group_rate(holdout_successes, holdout_decisions)
    if served.units < MIN_UNITS or holdout.units < MIN_UNITS:
        return None
    if served.decisions == 0 or holdout.decisions == 0:
        return None
    lift = served.rate - holdout.rate
    std_error = float(np.hypot(served.std_error, holdout.std_error))
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    low, high = lift - z * std_error, lift + z * std_error
    return HoldoutLift(
        served=served,
        holdout=holdout,
        lift=lift,
        ci_low=low,
        ci_high=high,
        relative_lift=lift / holdout.rate if holdout.rate > 0 else None,
        gained=lift * served.decisions,
        gained_low=low * served.decisions,
        gained_high=high * served.decisions,
        level=level,
    )


def _check(y: NDArray[np.float64], n: NDArray[np.float64]) -> None:
    if y.ndim != 1 or n.ndim != 1 or y.shape != n.shape:
        raise ValueError("successes and decisions must be 1-D arrays of one length (per unit)")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(n))):
        raise ValueError("successes and decisions must be finite")
    if np.any(y < 0) or np.any(n < 0) or np.any(y > n):
        raise ValueError("need 0 <= successes <= decisions for every unit")
