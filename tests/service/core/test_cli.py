"""The command line as an operator meets it: help on every option, explicit targets, where
the settings came from (never their values), and no Alembic chatter."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.core.cli import build_parser, main, settings_source
from service.core.runtime import Runtime
from simulation.audience import pinned_scenarios
from tests.conftest import SIGNING_KEYS
from tests.service.factories import create_random_experiment


def _parsers(parser: argparse.ArgumentParser, path: str = "banditloop"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{path} {action.option_strings or action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and not action.help
    ]
    assert missing == []


def test_simulate_help_lists_every_scenario_and_column(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = capsys.readouterr().out
    for name, scenario in pinned_scenarios().items():
        assert f"\n  {name} " in text, name
        assert scenario.description  # the help's one-liners summarise these
    for column in ("regret", "p90", "/unif", "p90/u", "best", "vs even", "unsub", "events"):
        assert f"\n  {column} " in text, column


@pytest.mark.parametrize("command", [["loop", "run"], ["stats", "rebuild"]])
def test_every_experiment_only_by_an_explicit_all(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(command)
    assert caught.value.code == 2
    assert "one of the arguments --experiment --all is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*command, "--experiment", "x", "--all"])


def test_settings_source_names_the_file_and_never_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("BANDITLOOP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("BANDITLOOP_DATABASE_URL", "sqlite:///x.db")
    env_file = tmp_path / ".env"
    env_file.write_text(
        "BANDITLOOP_LLM_API_KEY=sk-very-secret-value\n"
        "BANDITLOOP_DATABASE_URL=sqlite:///shadowed.db\n"
        "OTHER=1\n"
    )
    line = settings_source(str(env_file))
    assert "environment: DATABASE_URL" in line
    assert f"{env_file.resolve()}: LLM_API_KEY;" in line
    assert "secret" not in line
    assert "shadowed" not in line
    assert "OTHER" not in line
    assert "no nowhere/.env file" in settings_source("nowhere/.env")


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BANDITLOOP_")}
    return subprocess.run(
        [sys.executable, "-m", "service.core.cli", *args],
        cwd=cwd,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_prints_no_alembic_info_and_says_where_settings_came_from(tmp_path: Path):
    (tmp_path / ".env").write_text(f"BANDITLOOP_SIGNING_KEYS={SIGNING_KEYS}\n")
    done = _cli(["migrate"], {"BANDITLOOP_DATABASE_URL": f"sqlite:///{tmp_path}/b.db"}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("database at ")
    assert "INFO" not in done.stderr  # Alembic said "Context impl ..." on every run
    assert "environment: DATABASE_URL" in done.stderr
    assert f"{(tmp_path / '.env').resolve()}: SIGNING_KEYS" in done.stderr
    assert SIGNING_KEYS.split(":")[1] not in done.stderr


def test_one_off_commands_ignore_the_servers_metrics_folder(tmp_path: Path) -> None:
    """In the server's container PROMETHEUS_MULTIPROC_DIR is set, but only `serve` creates
    the folder: `keys create` in a fresh container must not fail on it."""
    env = {
        "BANDITLOOP_DATABASE_URL": f"sqlite:///{tmp_path}/b.db",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "not-created"),
    }
    assert _cli(["migrate"], env, tmp_path).returncode == 0
    done = _cli(["keys", "create", "--name", "ops", "--scopes", "admin"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("created key 1 (admin): bl_")
    assert not (tmp_path / "not-created").exists()


def test_stats_rebuild_takes_the_experiment_key(
    client: TestClient,
    admin,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    exp = create_random_experiment(client, admin, arms=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BANDITLOOP_DATABASE_URL", runtime.settings.database_url)
    monkeypatch.setenv("BANDITLOOP_SIGNING_KEYS", SIGNING_KEYS)
    assert main(["stats", "rebuild", "--experiment", exp["key"]]) == 0
    assert f"{exp['key']}: rebuilt statistics from 0 decisions" in capsys.readouterr().out
    assert main(["stats", "rebuild", "--all"]) == 0
    assert "every experiment: rebuilt" in capsys.readouterr().out
    assert main(["stats", "rebuild", "--experiment", "nope"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
    assert main(["loop", "run", "--all"]) == 0
    out, err = capsys.readouterr()
    assert f"{exp['key']}: run " in out
    assert "no LLM configured" in err


def test_simulate_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    assert main(["simulate", "--scenario", "stationary"]) == 2
    assert "pip install 'banditloop[simulation]'" in capsys.readouterr().err
