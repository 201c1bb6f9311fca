"""Realistic clocks: the clock scenarios, the Thompson baseline with an exploration share, and a
short fixed-seed run that keeps the regret benchmark from rotting silently."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from bandits.audience import clock_scenarios
from service.simulate import run
from service.simulate.clocks import CLOCK_POLICIES, REFRESH_HOURS, clock_runs

BENCH = Path(__file__).resolve().parents[2] / "bench" / "regret" / "clocks.py"


def test_every_clock_scenario_has_a_schedule_well_inside_its_delays():
    runs = clock_runs()
    assert set(runs) == set(clock_scenarios()) == set(REFRESH_HOURS)
    for name, clock in runs.items():
        # The policies must be able to see feedback between refreshes that matter: the refresh
        # interval is shorter than the median delay, except for push, where it is one minute.
        limit = max(clock.scenario.delay.median_hours, 1.0 / 60.0)
        assert clock.settings.refresh_hours <= limit, name
        assert clock.settings.hours is None
        # An experiment's defaults: no loop cadence, so nothing is retired during the run.
        assert clock.settings.loop_every_hours is None
    assert clock_runs(6.0)["conversions"].settings.hours == 6.0
    assert clock_runs(loop_every_hours=12.0)["swap"].settings.loop_every_hours == 12.0


def test_thompson_with_exploration_keeps_its_share():
    clock = clock_runs(12.0)["email"]
    result = run(clock.scenario, "thompson-explore", 0, clock.settings)
    k = len(clock.scenario.arms)
    served = result.allocation[result.decisions.sum(axis=1) > 0]
    assert served.min() >= 0.10 / k - 1e-12
    np.testing.assert_allclose(served.sum(axis=1), 1.0)
    # Pure Thompson on the same audience starves arms the exploration share keeps fed.
    pure = run(clock.scenario, "thompson", 0, clock.settings)
    assert pure.allocation[pure.decisions.sum(axis=1) > 0].min() < 0.10 / k


def test_the_service_beats_the_even_split_on_email_clocks():
    """A day of email (clicks with a median delay of 1 h), seed 0, every default.

    The first five hours are an even split by design (each arm's minimum sample of 500
    exposures comes before its evidence moves traffic), so a day is the shortest run in
    which the margin is clear.
    """
    clock = clock_runs(24.0)["email"]
    ours = run(clock.scenario, "ours", 0, clock.settings)
    even = run(clock.scenario, "uniform", 0, clock.settings)
    assert even.regret > 50  # the scenario has something to lose
    assert ours.regret <= 0.5 * even.regret, (ours.regret, even.regret)


def test_the_bench_prints_the_table(capsys: pytest.CaptureFixture[str]):
    spec = importlib.util.spec_from_file_location("bench_regret_clocks", BENCH)
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--hours", "3", "--scenarios", "email", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "| email | 1 |" in out
    assert "service/TS" in out
    assert set(CLOCK_POLICIES) == {"uniform", "thompson-explore", "ours"}
