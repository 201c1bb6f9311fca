"""The regret benchmark's smoke run: 3 seeds of every pinned scenario, shortened to 12 hours."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "regret" / "run.py"


def test_three_seed_smoke_run(capsys: pytest.CaptureFixture[str]):
    spec = importlib.util.spec_from_file_location("bench_regret_run", BENCH)
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # CPU time, not wall time: the suite may share the machine with other work.
    started = time.process_time()
    assert bench.main(["--seeds", "3", "--hours", "12", "--workers", "1"]) == 0
    assert time.process_time() - started < 60
    out = capsys.readouterr().out
    for scenario in ("stationary", "best_arm_swap", "guardrail_trap", "conversions"):
        assert f"{scenario} (3 seeds)" in out
    assert "aims (issue 6)" in out
    # Every aim is checked and printed, met or not.
    assert out.count("[MET   ]") + out.count("[MISSED]") == 8
