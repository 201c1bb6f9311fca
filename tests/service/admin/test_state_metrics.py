"""Gauges of state come from the database at scrape time: work done by the CLI (another
process with its own engine) shows in the server's /metrics, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from service.admin.state_metrics import StateCollector, arm_label, families, read_state
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.models.base import utcnow
from simulation.copywriter_server import CopywriterControl
from tests.conftest import SIGNING_KEYS
from tests.service.loop_fixtures import MODEL, publish, seed_experiment, serve_copywriter


@pytest.fixture(scope="module")
def copywriter_server() -> Iterator[tuple[str, CopywriterControl]]:
    yield from serve_copywriter()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Read the database on every scrape here; the cache has a test of its own below.
    return settings.model_copy(update={"metrics_cache_seconds": 0.0})


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def cli_loop_run(database_url: str, key: str, llm_url: str, cwd: Path) -> str:
    """`banditloop loop run` as an operator types it: another process, its own settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITLOOP_")}
    env |= {
        "BANDITLOOP_DATABASE_URL": database_url,
        "BANDITLOOP_SIGNING_KEYS": SIGNING_KEYS,
        "BANDITLOOP_LLM_BASE_URL": llm_url,
        "BANDITLOOP_LLM_API_KEY": "test-key",
        "BANDITLOOP_LLM_MODEL": MODEL,
    }
    command = [sys.executable, "-m", "service.core.cli", "loop", "run", "--experiment", key]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cli_loop_runs_and_their_proposals_show_in_the_servers_metrics(
    client: TestClient,
    admin,
    decide,
    ingest,
    runtime: Runtime,
    database_url: str,
    copywriter_server: tuple[str, CopywriterControl],
    tmp_path: Path,
):
    llm_url, control = copywriter_server
    control.reset()
    experiment = seed_experiment(client, admin, decide, ingest, runtime, key="state")
    before = scrape(client)
    assert (
        value(before, "banditloop_loop_runs_total", experiment="state", status="succeeded") is None
    )
    assert value(before, "banditloop_proposals_pending", experiment="state") == 0
    assert value(before, "banditloop_arms", experiment="state", status="live") == 6
    assert value(before, "banditloop_arms", experiment="state", status="suspended") == 0

    for _ in range(2):
        assert " succeeded: " in cli_loop_run(database_url, "state", llm_url, tmp_path)

    after = scrape(client)
    assert value(after, "banditloop_loop_runs_total", experiment="state", status="succeeded") == 2
    pending = value(after, "banditloop_proposals_pending", experiment="state")
    assert pending is not None
    assert pending >= 2

    # Each arm's text is exported once, truncated, for dashboard legends.
    for arm in experiment["arms"]:
        label = arm_label(arm["content"])
        assert (
            value(after, "banditloop_arm_info", experiment="state", arm=str(arm["id"]), label=label)
            == 1
        )
    # seed_experiment published a snapshot just now.
    age = value(after, "banditloop_policy_snapshot_age_seconds", experiment="state")
    assert age is not None
    assert 0 <= age < 120

    # A suspension by another process shows at the next scrape too.
    arm_id = experiment["arms"][0]["id"]
    response = client.post(
        f"/v1/experiments/state/arms/{arm_id}/suspend", json={"reason": "legal"}, headers=admin
    )
    assert response.status_code == 200, response.text
    later = scrape(client)
    assert value(later, "banditloop_arms", experiment="state", status="suspended") == 1
    assert value(later, "banditloop_arms", experiment="state", status="live") == 5


def test_the_reading_is_cached_and_ages_are_taken_at_scrape_time(
    client: TestClient, admin, runtime: Runtime
):
    key = "cached"
    body = {"key": key, "name": "Cached", "arms": [{"content": "A"}, {"content": "B"}]}
    assert client.post("/v1/experiments", json=body, headers=admin).status_code == 201
    now = [100.0]
    collector = StateCollector(runtime.engine, cache_seconds=5, timer=lambda: now[0])
    first = collector.reading()
    assert first is not None
    body = {"content": "C"}
    assert client.post(f"/v1/experiments/{key}/arms", json=body, headers=admin).status_code < 300
    now[0] += 4.9
    assert collector.reading() is first  # within the cache window: no query
    now[0] += 0.2
    fresh = collector.reading()
    assert fresh is not first
    assert fresh is not None
    assert len([a for a in fresh.arms if a[0] == key]) == 3

    # The age grows with the clock of the scrape, not of the read.
    publish(runtime)
    reading = read_state(runtime.engine)
    assert key in reading.snapshot_times
    later = utcnow() + timedelta(seconds=60)
    (age,) = [f for f in families(reading, later) if f.name.endswith("age_seconds")]
    assert [s.value >= 60 for s in age.samples if s.labels["experiment"] == key] == [True]


def test_a_failing_database_does_not_fail_the_scrape(tmp_path: Path) -> None:
    broken = create_engine(f"sqlite:///{tmp_path / 'missing' / 'nothing.db'}")
    collector = StateCollector(broken, cache_seconds=0)
    assert list(collector.collect()) == []


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Short", "Short"),
        ("  Spaces\n and\tnewlines  ", "Spaces and newlines"),
        ("x" * 60, "x" * 39 + "…"),
        (
            "Ready for the new season edit? Shop the looks now",
            "Ready for the new season edit? Shop the…",
        ),
    ],
)
def test_arm_labels_are_one_bounded_line(text: str, label: str) -> None:
    assert arm_label(text) == label
    assert len(arm_label(text)) <= 40
