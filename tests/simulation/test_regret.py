"""The simulator: the service's engine on a simulated clock, deterministic for a seed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from service.core.cli import main as cli_main
from service.core.vocabulary import OVERALL
from service.measuring.counting import stat_key
from service.models import Decision
from service.policy.compute import PolicyInputs, compute_snapshot
from service.policy.inputs import ArmInfo
from simulation.audience import ArmSpec, Scenario, pinned_scenarios
from simulation.regret import RunResult, SimulationSettings, run
from simulation.regret.policies import experiment_info
from simulation.regret.store import SIM_START, SimulatedStatistics, at_hours

SHORT = SimulationSettings(hours=12)


def same(a: RunResult, b: RunResult) -> bool:
    return (
        np.array_equal(a.cumulative_regret, b.cumulative_regret)
        and np.array_equal(a.allocation, b.allocation)
        and np.array_equal(a.decisions, b.decisions)
        and (a.successes, a.unsubscribes, a.suspended, a.retired)
        == (b.successes, b.unsubscribes, b.suspended, b.retired)
    )


@pytest.mark.parametrize("policy", ["ours", "thompson", "ours-naive"])
def test_a_seed_repeats_exactly(policy: str):
    scenario = pinned_scenarios()["segments"]
    first = run(scenario, policy, 4, SHORT)
    assert same(first, run(scenario, policy, 4, SHORT))
    assert not same(first, run(scenario, policy, 5, SHORT))


def test_policies_face_the_same_audience():
    """Common random numbers: with one arm, every policy sees exactly the same outcomes."""
    scenario = Scenario(name="one", description="one arm", arms=(ArmSpec("only", 0.05),))
    results = [run(scenario, p, 1, SHORT) for p in ("uniform", "thompson", "ours")]
    assert len({r.successes for r in results}) == 1
    assert len({r.unsubscribes for r in results}) == 1
    assert all(r.regret == 0 for r in results)


def test_statistics_are_counted_like_the_service():
    store = SimulatedStatistics(
        experiment_id=1,
        epoch=1,
        segments=("",),
        success_metric="click",
        event_types=("click", "unsubscribe"),
        attribution_window_hours=168.0,
    )
    sent = np.array([0.25, 0.5, 1.5])
    arms = np.array([1, 1, 2])
    segments = np.zeros(3, dtype=np.int64)
    store.expose(sent=sent, arm=arms, segment=segments)
    store.schedule(
        event_type="click",
        sent=sent,
        delay=np.array([1.0, 200.0, 5.0]),  # the second arrives after the window: late
        arm=arms,
        segment=segments,
    )
    store.advance(2.0)
    rows = {(r.arm_id, r.hour, r.metric): r.count for r in store.rows()}
    hour0, hour1 = SIM_START, SIM_START + timedelta(hours=1)
    assert rows == {(1, hour0, "exposure"): 2, (2, hour1, "exposure"): 1, (1, hour0, "click"): 1}
    store.advance(400.0)
    rows = {(r.arm_id, r.hour, r.metric): r.count for r in store.rows()}
    assert rows[(2, hour1, "click")] == 1  # in the decision's cohort, not the event's hour
    assert rows[(1, hour0, "click")] == 1
    # Keys are the service's own: stat_key of a decision made at that time.
    decision = Decision(
        id="x",
        experiment_id=1,
        epoch=1,
        arm_id=2,
        segment="",
        propensity=0.5,
        policy_version=1,
        created_at=at_hours(1.5),
    )
    row = next(r for r in store.rows() if r.arm_id == 2 and r.metric == "click")
    assert stat_key(decision, "click")[2:] == (row.segment, row.arm_id, row.hour, row.metric)
    delays = sorted((d.delay_hours, d.cohort_age_hours) for d in store.success_delays())
    assert delays == [(1.0, 399.75), (5.0, 398.5)]
    assert store.totals("click", [1, 2, 3]).tolist() == [1.0, 1.0, 0.0]


def test_the_naive_ablation_switches_off_the_delay_correction():
    scenario = pinned_scenarios()["stationary"]
    info = experiment_info(scenario)
    store = SimulatedStatistics(
        experiment_id=1,
        epoch=1,
        segments=("",),
        success_metric="click",
        event_types=("click",),
        attribution_window_hours=168.0,
    )
    store.expose(
        sent=np.full(600, 0.5),
        arm=np.ones(600, dtype=np.int64),
        segment=np.zeros(600, dtype=np.int64),
    )
    store.advance(2.0)
    arms = [ArmInfo(1, "a", None, True, "live"), ArmInfo(2, "b", None, False, "live")]
    inputs = PolicyInputs(info, arms, store.rows(), [], None)
    now = at_hours(2.0)
    corrected = compute_snapshot(inputs, now=now, rng=np.random.default_rng(0))
    naive = compute_snapshot(inputs, now=now, rng=np.random.default_rng(0), delay_correction=False)
    assert corrected.segments[OVERALL].effective_exposures[0] < 600
    assert naive.segments[OVERALL].effective_exposures[0] == 600


def test_guardrail_suspension_is_honoured():
    scenario = Scenario(
        name="trap",
        description="a blatant unsubscribe trap",
        arms=(ArmSpec("fine", 0.03), ArmSpec("trap", 0.05, rate_unsub=0.05)),
        sends_per_hour=600,
    )
    result = run(scenario, "ours", 2, SimulationSettings(hours=24))
    assert "trap" in result.suspended
    hour, exposures = result.suspended["trap"]
    assert exposures >= 500  # the minimum sample comes first
    after = result.hours > hour
    assert result.decisions[after, 1].sum() == 0
    assert (result.allocation[after, 1] == 0).all()
    # The baselines know nothing of guardrails.
    assert run(scenario, "thompson", 2, SimulationSettings(hours=24)).suspended == {}


@pytest.mark.parametrize("policy", ["ours", "epsilon-greedy", "uniform"])
def test_arms_are_added_and_removed_on_schedule(policy: str):
    scenario = Scenario(
        name="churn",
        description="one arm arrives, one leaves",
        arms=(
            ArmSpec("stays", 0.03),
            ArmSpec("leaves", 0.03, removed_at_hours=6.0),
            ArmSpec("arrives", 0.04, added_at_hours=3.0),
        ),
    )
    result = run(scenario, policy, 0, SHORT)
    assert result.decisions[result.hours < 3, 2].sum() == 0
    assert result.decisions[result.hours >= 3, 2].sum() > 0
    assert result.decisions[result.hours >= 6, 1].sum() == 0
    assert result.decisions.sum() == 12 * 300


def test_invalid_settings_and_policies():
    scenario = pinned_scenarios()["stationary"]
    with pytest.raises(ValueError, match="refresh_hours"):
        SimulationSettings(refresh_hours=0)
    with pytest.raises(ValueError, match="hours"):
        SimulationSettings(hours=-1)
    with pytest.raises(ValueError, match="loop_every_hours"):
        SimulationSettings(loop_every_hours=0)
    with pytest.raises(ValueError, match="policy"):
        run(scenario, "greedy", 0, SHORT)


def test_simulate_command_prints_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = cli_main(
        ["simulate", "--scenario", "best_arm_swap", "--hours", "6", "--out", str(tmp_path)]
    )
    assert code == 0
    out = capsys.readouterr().out
    for policy in ("uniform", "epsilon-greedy", "thompson", "ours"):
        assert policy in out
    for name in ("best_arm_swap-regret.png", "best_arm_swap-allocation.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    assert cli_main(["simulate", "--scenario", "nope"]) == 2
