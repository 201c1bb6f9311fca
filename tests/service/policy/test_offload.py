"""Snapshots computed in the child process are the snapshots computed in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from service.core.runtime import Runtime
from service.policy.compute import compute_snapshot
from service.policy.loaded import PolicyCache
from service.policy.offload import ComputeProcess
from service.policy.refresher import Refresher, read_policy_inputs
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many, later


@pytest.fixture
def child() -> Iterator[ComputeProcess]:
    process = ComputeProcess()
    yield process
    process.stop()


def test_the_child_computes_what_the_server_would(
    client: TestClient, admin, decide, ingest, runtime: Runtime, child: ComputeProcess
) -> None:
    exp = create_random_experiment(client, admin, arms=3)
    decisions = decide_many(client, decide, runtime, exp["key"], 300)
    clicks = [
        {"event_id": f"c{i}", "decision_id": d["decision_id"], "type": "click"}
        for i, d in enumerate(decisions[::7])
    ]
    assert client.post("/v1/events", json=clicks, headers=ingest).status_code == 200
    now = later()
    with Session(runtime.engine) as session:
        inputs = read_policy_inputs(session, experiment_id=exp["id"], now=now)
    assert inputs is not None

    here = compute_snapshot(inputs, now=now, rng=np.random.default_rng([exp["id"], 7]))
    there = child(inputs, now=now, rng=np.random.default_rng([exp["id"], 7]))

    assert there.to_json() == here.to_json()
    assert sum(there.overall.exposures) == 300  # type: ignore[union-attr]


def test_an_error_in_the_child_is_raised_in_the_caller(child: ComputeProcess) -> None:
    broken: Any = None
    with pytest.raises(AttributeError):
        child(broken, now=later(), rng=np.random.default_rng(1))


def test_a_dead_child_is_replaced_on_the_next_call(
    client: TestClient, admin, runtime: Runtime, child: ComputeProcess
) -> None:
    exp = create_random_experiment(client, admin, arms=2)
    now = later()
    with Session(runtime.engine) as session:
        inputs = read_policy_inputs(session, experiment_id=exp["id"], now=now)
    assert inputs is not None
    first = child(inputs, now=now, rng=np.random.default_rng(1))
    child._child.kill()  # type: ignore[union-attr]
    child._child.wait()  # type: ignore[union-attr]

    again = child(inputs, now=now, rng=np.random.default_rng(1))

    assert again.to_json() == first.to_json()


def test_the_refresher_starts_its_child_before_its_first_computation(
    runtime: Runtime,
) -> None:
    """The first computation runs inside a transaction (on SQLite, the write lock): the
    child's start-up must not happen there."""
    refresher = Refresher(
        runtime.engine, PolicyCache(), interval=3600, lease_seconds=10, compute_process=True
    )
    refresher.start()
    try:
        child = refresher._offload._child
        assert child is not None
        assert child.poll() is None
    finally:
        refresher.stop()
    assert refresher._offload._child is None
