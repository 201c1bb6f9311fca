"""`make serve` installs only what serving needs; `make test` brings the dev tools and the
tools its tests use."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _plan(target: str, venv: Path) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_serve_installs_the_package_without_dev_tools(tmp_path: Path) -> None:
    plan = _plan("serve", tmp_path / "venv")
    assert "pip install -q -e ." in plan
    assert ".[dev]" not in plan
    assert plan.strip().endswith("banditloop serve --demo")


def test_test_installs_dev_tools_and_the_test_machinery(tmp_path: Path) -> None:
    plan = _plan("test", tmp_path / "venv")
    assert "pip install -q -e '.[dev,simulation]'" in plan
    for script in (
        "ensure-services",
        "ensure-prometheus",
        "ensure-chromium",
        "ensure-axe",
        "ensure-docker",
    ):
        assert f"bash scripts/{script}.sh" in plan
    assert "pytest" in plan
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
