from __future__ import annotations

import numpy as np
import pytest

from bandits.fatigue import slope, time_pattern


def test_slope_by_repeat_exposure_by_hand() -> None:
    # Log-odds falling by exactly log(2) per group: the fitted slope is -log(2).
    n = np.array([10_000.0, 10_000.0, 10_000.0])
    odds = np.array([0.08, 0.04, 0.02])
    s = np.round(n * odds / (1 + odds))  # successes at exactly those odds, rounded
    fitted = slope(s, n)
    assert fitted is not None
    assert fitted.slope == pytest.approx(-np.log(2), abs=0.03)
    assert fitted.falls
    assert slope([1, 2], [10, 10]) is None  # two groups: no line with an interval


def test_a_trend_a_step_and_a_flat_rate_are_told_apart() -> None:
    rng = np.random.default_rng(14)
    n = np.full(8, 3000)
    weeks = np.arange(8)
    kinds = {"trend": [], "change": [], "flat": []}
    for _ in range(100):
        trend = rng.binomial(n, 1 / (1 + np.exp(3.2 + 0.06 * weeks)))
        step = rng.binomial(n, np.where(weeks >= 5, 0.025, 0.04))
        flat = rng.binomial(n, np.full(8, 0.035))
        for kind, series in (("trend", trend), ("change", step), ("flat", flat)):
            pattern = time_pattern(series, n)
            assert pattern is not None
            kinds[kind].append(pattern.kind)
    assert kinds["trend"].count("trend") >= 60
    assert kinds["change"].count("change") >= 85
    assert kinds["flat"].count("trend") <= 5  # a flat rate is almost never called fatigue


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="1-D"):
        slope([1, 2, 3], [10, 10])
    with pytest.raises(ValueError, match="successes <= exposures"):
        slope([11, 2, 3], [10, 10, 10])
    with pytest.raises(ValueError, match="confidence"):
        slope([1, 2, 3], [10, 10, 10], confidence=1.0)
