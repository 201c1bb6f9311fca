"""Retirement eligibility: which arms have clearly lost, and for long enough to retire.

An arm is eligible now when it has the minimum sample, P(best) below 1%, an expected loss above
a fraction of the leader's rate, and leads no segment; it becomes retirable once that has held
for 24 hours and across two loop runs. Streaks live in the policy snapshot, hence the JSON
round trip (DESIGN.md, "The policy").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class Streak:
    """An arm's unbroken run of eligibility: since when (unix seconds), and loop runs seen."""

    since: float
    loop_runs: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.since):
            raise ValueError("since must be a finite unix time")
        if isinstance(self.loop_runs, bool) or self.loop_runs < 0:
            raise ValueError("loop_runs must be a non-negative integer")

    def to_dict(self) -> dict[str, float | int]:
        return {"since": float(self.since), "loop_runs": int(self.loop_runs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Streak:
        try:
            since, loop_runs = data["since"], data["loop_runs"]
        except KeyError as error:
            raise ValueError(f"streak is missing {error.args[0]!r}") from error
        if isinstance(since, bool) or not isinstance(since, int | float):
            raise ValueError("streak 'since' must be a number")
        if isinstance(loop_runs, bool) or not isinstance(loop_runs, int):
            raise ValueError("streak 'loop_runs' must be an integer")
        return cls(since=float(since), loop_runs=loop_runs)


def streaks_to_json(streaks: Mapping[int, Streak]) -> dict[str, dict[str, float | int]]:
    """Streaks keyed by arm id as a JSON object (whose keys must be strings)."""
    return {str(arm_id): streak.to_dict() for arm_id, streak in sorted(streaks.items())}


def streaks_from_json(data: Mapping[str, Mapping[str, Any]]) -> dict[int, Streak]:
    """Inverse of ``streaks_to_json``."""
    streaks: dict[int, Streak] = {}
    for key, value in data.items():
        try:
            arm_id = int(key)
        except ValueError as error:
            raise ValueError(f"streak key {key!r} is not an arm id") from error
        streaks[arm_id] = Streak.from_dict(value)
    return streaks


def _per_arm(name: str, values: ArrayLike, size: int | None) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (size is not None and array.size != size):
        raise ValueError(f"{name} must be a 1-D array with one entry per arm")
    return array


def eligible_now(
    *,
    raw_exposures: ArrayLike,
    raw_successes: ArrayLike,
    probability_best: ArrayLike,
    expected_loss: ArrayLike,
    leader_rate: float,
    leads_any_segment: ArrayLike,
    min_exposures: int,
    min_successes: int,
    max_probability_best: float = 0.01,
    loss_fraction: float = 0.10,
) -> BoolArray:
    """Which arms meet every retirement rule at this refresh (before the hold).

    Gates use raw (undecayed, uncorrected) counts so that eligibility does not flap as evidence
    decays. ``expected_loss`` is E[max rate - rate_a] in rate units, compared with
    ``loss_fraction * leader_rate``. A NaN figure never makes an arm eligible.
    """
    exposures = _per_arm("raw_exposures", raw_exposures, None)
    size = exposures.size
    successes = _per_arm("raw_successes", raw_successes, size)
    best = _per_arm("probability_best", probability_best, size)
    loss = _per_arm("expected_loss", expected_loss, size)
    leads = np.asarray(leads_any_segment)
    if leads.shape != (size,) or leads.dtype != np.bool_:
        raise ValueError("leads_any_segment must be a boolean array with one entry per arm")
    if np.any(exposures < 0) or np.any(successes < 0):
        raise ValueError("raw counts must be non-negative")
    if not math.isfinite(leader_rate) or not 0 <= leader_rate <= 1:
        raise ValueError("leader_rate must be in [0, 1]")
    if min_exposures < 1 or min_successes < 0:
        raise ValueError("min_exposures must be >= 1 and min_successes >= 0")
    if not 0 < max_probability_best <= 1:
        raise ValueError("max_probability_best must be in (0, 1]")
    if not math.isfinite(loss_fraction) or loss_fraction < 0:
        raise ValueError("loss_fraction must be a non-negative finite number")
    with np.errstate(invalid="ignore"):
        eligible = (
            (exposures >= min_exposures)
            & (successes >= min_successes)
            & (best < max_probability_best)
            & (loss > loss_fraction * leader_rate)
            & ~leads
        )
    return np.asarray(eligible, dtype=np.bool_)


def update_streaks(
    previous: Mapping[int, Streak],
    arm_ids: Sequence[int],
    eligible: ArrayLike,
    now: float,
) -> dict[int, Streak]:
    """Carry streaks of arms still eligible, start one for newly eligible arms, drop the rest.

    Arms absent from ``arm_ids`` (retired, suspended, no longer live) lose their streak too: an
    interruption of eligibility restarts the clock.
    """
    mask = np.asarray(eligible)
    if mask.shape != (len(arm_ids),) or mask.dtype != np.bool_:
        raise ValueError("eligible must be a boolean array with one entry per arm id")
    if len(set(arm_ids)) != len(arm_ids):
        raise ValueError("arm_ids must be unique")
    if not math.isfinite(now):
        raise ValueError("now must be a finite unix time")
    streaks: dict[int, Streak] = {}
    for arm_id, is_eligible in zip(arm_ids, mask.tolist(), strict=True):
        if is_eligible:
            streaks[arm_id] = previous.get(arm_id, Streak(since=now, loop_runs=0))
    return streaks


def count_loop_run(streaks: Mapping[int, Streak], now: float) -> dict[int, Streak]:
    """Record one loop run at ``now`` for every streak that had started by then."""
    if not math.isfinite(now):
        raise ValueError("now must be a finite unix time")
    return {
        arm_id: replace(streak, loop_runs=streak.loop_runs + 1) if streak.since <= now else streak
        for arm_id, streak in streaks.items()
    }


def retirable(
    streaks: Mapping[int, Streak],
    now: float,
    *,
    hold_hours: float = 24.0,
    min_loop_runs: int = 2,
) -> set[int]:
    """Arms whose eligibility has held for ``hold_hours`` and across ``min_loop_runs`` runs."""
    if not math.isfinite(now):
        raise ValueError("now must be a finite unix time")
    if not math.isfinite(hold_hours) or hold_hours < 0:
        raise ValueError("hold_hours must be a non-negative finite number")
    if min_loop_runs < 0:
        raise ValueError("min_loop_runs must be non-negative")
    hold_seconds = hold_hours * 3600.0
    return {
        arm_id
        for arm_id, streak in streaks.items()
        if now - streak.since >= hold_seconds and streak.loop_runs >= min_loop_runs
    }
