"""Retirement eligibility: each rule, the streak lifecycle, and the snapshot round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandits.eligibility import (
    Streak,
    count_loop_run,
    eligible_now,
    retirable,
    streaks_from_json,
    streaks_to_json,
    update_streaks,
)

HOUR = 3600.0
T0 = 1_700_000_000.0


def rules(**overrides: object) -> np.ndarray:
    """Arm 0 meets every rule; overrides break one at a time."""
    arguments: dict[str, object] = {
        "raw_exposures": np.array([2_000.0, 2_000.0]),
        "raw_successes": np.array([20.0, 60.0]),
        "probability_best": np.array([0.001, 0.999]),
        "expected_loss": np.array([0.02, 0.0]),
        "leader_rate": 0.03,
        "leads_any_segment": np.array([False, True]),
        "min_exposures": 500,
        "min_successes": 5,
    }
    arguments.update(overrides)
    return eligible_now(**arguments)  # type: ignore[arg-type]


def test_clear_loser_is_eligible_and_leader_is_not() -> None:
    assert rules().tolist() == [True, False]


@pytest.mark.parametrize(
    ("override", "why"),
    [
        ({"raw_exposures": np.array([499.0, 2_000.0])}, "below the minimum sample"),
        ({"raw_successes": np.array([4.0, 60.0])}, "below the minimum successes"),
        ({"probability_best": np.array([0.01, 0.99])}, "P(best) not below 1%"),
        ({"probability_best": np.array([np.nan, 0.99])}, "P(best) unknown"),
        ({"expected_loss": np.array([0.003, 0.0])}, "loss not above 10% of the leader's rate"),
        ({"leads_any_segment": np.array([True, True])}, "leads a segment"),
    ],
)
def test_each_rule_blocks_eligibility(override: dict[str, object], why: str) -> None:
    assert not rules(**override)[0], why


def test_thresholds_are_configurable() -> None:
    assert rules(probability_best=np.array([0.04, 0.96]), max_probability_best=0.05)[0]
    assert not rules(loss_fraction=1.0)[0]


def test_streak_starts_when_eligible_and_is_dropped_when_not() -> None:
    streaks = update_streaks({}, [7, 8], np.array([True, False]), T0)
    assert streaks == {7: Streak(since=T0, loop_runs=0)}
    # Still eligible an hour later: the streak keeps its start.
    streaks = update_streaks(streaks, [7, 8], np.array([True, True]), T0 + HOUR)
    assert streaks == {7: Streak(T0, 0), 8: Streak(T0 + HOUR, 0)}
    # Arm 7 stops being eligible: its streak is gone, and a new one starts from scratch.
    streaks = update_streaks(streaks, [7, 8], np.array([False, True]), T0 + 2 * HOUR)
    assert 7 not in streaks
    streaks = update_streaks(streaks, [7, 8], np.array([True, True]), T0 + 3 * HOUR)
    assert streaks[7] == Streak(T0 + 3 * HOUR, 0)
    # An arm that leaves the live set loses its streak.
    assert update_streaks(streaks, [8], np.array([True]), T0 + 4 * HOUR) == {8: streaks[8]}


def test_retirable_needs_both_the_hold_and_two_loop_runs() -> None:
    streaks = update_streaks({}, [1], np.array([True]), T0)
    streaks = count_loop_run(streaks, T0 + HOUR)
    assert retirable(streaks, T0 + 25 * HOUR) == set()  # 24 h held, one loop run
    streaks = count_loop_run(streaks, T0 + 2 * HOUR)
    assert retirable(streaks, T0 + 23 * HOUR) == set()  # two runs, under 24 h
    assert retirable(streaks, T0 + 24 * HOUR) == {1}
    assert retirable(streaks, T0 + 2 * HOUR, hold_hours=1.0, min_loop_runs=2) == {1}


def test_loop_run_before_the_streak_started_does_not_count() -> None:
    streaks = {1: Streak(T0, 0), 2: Streak(T0 + 10 * HOUR, 0)}
    counted = count_loop_run(streaks, T0 + HOUR)
    assert counted == {1: Streak(T0, 1), 2: Streak(T0 + 10 * HOUR, 0)}
    assert streaks[1].loop_runs == 0  # inputs are not mutated


def test_full_cycle_through_the_snapshot() -> None:
    snapshot: dict[str, dict[str, float | int]] = {}
    for hour, eligible in [(0, True), (6, True), (12, True), (24, True)]:
        now = T0 + hour * HOUR
        streaks = update_streaks(streaks_from_json(snapshot), [3], np.array([eligible]), now)
        if hour in (6, 24):
            streaks = count_loop_run(streaks, now)
        snapshot = json.loads(json.dumps(streaks_to_json(streaks)))
    assert retirable(streaks_from_json(snapshot), T0 + 24 * HOUR) == {3}


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.integers(0, 10**9),
        st.builds(
            Streak,
            since=st.floats(0, 4e9, allow_nan=False, allow_infinity=False),
            loop_runs=st.integers(0, 10**6),
        ),
        max_size=20,
    )
)
def test_property_streaks_round_trip_through_json(streaks: dict[int, Streak]) -> None:
    text = json.dumps(streaks_to_json(streaks))
    assert streaks_from_json(json.loads(text)) == streaks
    for streak in streaks.values():
        assert Streak.from_dict(json.loads(json.dumps(streak.to_dict()))) == streak


@settings(max_examples=100, deadline=None)
@given(
    eligibility=st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=1, max_size=30)
)
def test_property_streak_since_is_the_start_of_the_current_run(
    eligibility: list[list[bool]],
) -> None:
    streaks: dict[int, Streak] = {}
    arm_ids = [10, 11, 12]
    for step, row in enumerate(eligibility):
        streaks = update_streaks(streaks, arm_ids, np.array(row), T0 + step * HOUR)
    for column, arm_id in enumerate(arm_ids):
        history = [row[column] for row in eligibility]
        if not history[-1]:
            assert arm_id not in streaks
            continue
        start = len(history) - 1
        while start > 0 and history[start - 1]:
            start -= 1
        assert streaks[arm_id].since == T0 + start * HOUR


# Invalid inputs.


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"raw_successes": np.array([1.0])}, "one entry per arm"),
        ({"leads_any_segment": np.array([0, 1])}, "boolean"),
        ({"raw_exposures": np.array([-1.0, 2.0])}, "non-negative"),
        ({"leader_rate": 1.5}, "leader_rate"),
        ({"leader_rate": float("nan")}, "leader_rate"),
        ({"min_exposures": 0}, "min_exposures"),
        ({"max_probability_best": 0.0}, "max_probability_best"),
        ({"loss_fraction": -0.1}, "loss_fraction"),
    ],
)
def test_eligible_now_rejects_invalid_inputs(override: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules(**override)


def test_streak_functions_reject_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="one entry per arm id"):
        update_streaks({}, [1, 2], np.array([True]), T0)
    with pytest.raises(ValueError, match="unique"):
        update_streaks({}, [1, 1], np.array([True, True]), T0)
    with pytest.raises(ValueError, match="finite"):
        update_streaks({}, [1], np.array([True]), float("nan"))
    with pytest.raises(ValueError, match="finite"):
        count_loop_run({}, float("inf"))
    with pytest.raises(ValueError, match="hold_hours"):
        retirable({}, T0, hold_hours=-1.0)
    with pytest.raises(ValueError, match="loop_runs"):
        Streak(T0, -1)
    with pytest.raises(ValueError, match="since"):
        Streak(float("nan"), 0)


@pytest.mark.parametrize(
    "data",
    [
        {"since": T0},
        {"loop_runs": 1},
        {"since": "yesterday", "loop_runs": 1},
        {"since": T0, "loop_runs": 1.5},
        {"since": True, "loop_runs": 1},
    ],
)
def test_streak_from_dict_rejects_malformed_snapshots(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        Streak.from_dict(data)


def test_streaks_from_json_rejects_non_integer_keys() -> None:
    with pytest.raises(ValueError, match="arm id"):
        streaks_from_json({"arm-1": {"since": T0, "loop_runs": 0}})
