"""`banditloop simulate --loop` (a short smoke run) and `banditloop loop run`."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.core.cli import main
from service.core.runtime import Runtime
from simulation.loop import SimulationConfig, compare, true_tags
from tests.conftest import SIGNING_KEYS
from tests.service.factories import create_random_experiment


def test_true_tags_read_the_text():
    assert true_tags("Ready for {{ first_name }}?") == {"question", "personalized", "length:short"}
    assert "urgency" in true_tags("Last chance: the weekend essentials are going fast")
    assert "length:long" in true_tags("x" * 60)


def test_two_short_generations_run_the_whole_loop():
    config = SimulationConfig(generations=2, sends_per_generation=800)
    results = compare(config)
    (again,) = compare(config)["with learnings"]  # seeded: the same run again
    (first,) = results["with learnings"]
    assert [(g.best_live_rate, g.served_rate) for g in again[1:]] == [
        (g.best_live_rate, g.served_rate) for g in first[1:]
    ]
    assert set(results) == {"with learnings", "without learnings"}
    for (series,) in results.values():
        assert [g.index for g in series] == [0, 1, 2]
        assert all(0 < g.best_live_rate < 1 for g in series)
        assert all(g.live_arms >= 1 for g in series)
        # the best live arm is never lost: the reviewer only retires clear losers
        assert series[-1].best_live_rate >= series[0].best_live_rate


def test_simulate_command_prints_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    plot = tmp_path / "loop.png"
    code = main(
        [
            "simulate",
            "--loop",
            "--generations",
            "1",
            "--sends",
            "400",
            "--repeats",
            "1",
            "--plot",
            str(plot),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "with learnings" in out
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert main(["simulate", "--loop", "--generations", "0"]) == 2


def test_loop_run_command(
    client: TestClient,
    admin,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    exp = create_random_experiment(client, admin, arms=2)
    monkeypatch.setenv("BANDITLOOP_DATABASE_URL", runtime.settings.database_url)
    monkeypatch.setenv("BANDITLOOP_SIGNING_KEYS", SIGNING_KEYS)
    monkeypatch.setenv("BANDITLOOP_LLM_BASE_URL", "")
    assert main(["loop", "run", "--experiment", exp["key"]]) == 0
    out = capsys.readouterr().out
    assert f"{exp['key']}: run " in out
    assert "requested no proposals" in out
    runs = client.get(f"/v1/experiments/{exp['key']}/loop-runs", headers=admin).json()["runs"]
    assert [r["trigger"] for r in runs] == ["cli"]
    assert main(["loop", "run", "--experiment", "nope"]) == 2
