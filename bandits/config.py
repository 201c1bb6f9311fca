"""The policy's algorithm settings as a validated value object.

Kept apart from the service's environment settings: these are per-experiment
choices about the math, checked once when built so the engine never has to.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


class InvalidPolicyConfig(ValueError):
    """A policy setting is out of range or of the wrong type; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _check_float(
    field: str, value: object, *, low: float, high: float, low_inclusive: bool = True
) -> None:
    # bool is an int subclass: `exploration_share=True` is a bug, not 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidPolicyConfig(field, f"must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidPolicyConfig(field, f"must be finite, got {number!r}")
    above_low = low <= number if low_inclusive else low < number
    if not (above_low and number < high):
        opening = "[" if low_inclusive else "("
        raise InvalidPolicyConfig(field, f"must be in {opening}{low}, {high}), got {number!r}")


def _check_int(field: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidPolicyConfig(field, f"must be an integer, got {type(value).__name__}")
    if int(value) < minimum:
        raise InvalidPolicyConfig(field, f"must be >= {minimum}, got {int(value)}")


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """How one experiment's allocation is computed (see DESIGN.md, "The policy").

    ``warmup_share`` is the floor in the *exploit* distribution of an arm still
    under the minimum sample (capped at 1/K eligible arms), itself capped at the
    arm's P(best). Before any arm is mature every arm is lifted by it and the
    rest follows P(best); once one is, an arm still short of its minimum
    successes gets its P(best) capped at it, so a fresh arm cannot knock a
    proven leader back, while one that has its minimum successes is judged on
    its own evidence, and one already well behind is never paid a floor it
    would waste (``bandits.allocation`` says why).
    """

    exploration_share: float = 0.10
    min_exposures: int = 500
    min_successes: int = 5
    prior_strength: float = 2.0
    draws: int = 4000
    warmup_share: float = 0.10

    def __post_init__(self) -> None:
        _check_float("exploration_share", self.exploration_share, low=0.0, high=1.0)
        _check_int("min_exposures", self.min_exposures, minimum=1)
        _check_int("min_successes", self.min_successes, minimum=0)
        _check_float(
            "prior_strength", self.prior_strength, low=0.0, high=math.inf, low_inclusive=False
        )
        _check_int("draws", self.draws, minimum=100)
        _check_float("warmup_share", self.warmup_share, low=0.0, high=1.0)
