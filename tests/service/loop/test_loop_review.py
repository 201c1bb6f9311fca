"""Reviewing the loop's proposals, retirement by evidence, auto-approval, the learnings
file, the lease between replicas and the scheduler, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.core.runtime import Runtime
from service.core.settings import Settings
from service.models import Arm, LoopRun, utcnow
from service.policy import repository as snapshots_repo
from simulation.copywriter import read_data_block
from simulation.copywriter_server import REPEAT, SLOW, CopywriterControl
from tests.service.loop_fixtures import (
    llm_settings,
    pending,
    run_loop,
    seed_experiment,
)


@pytest.fixture
def settings(settings: Settings, copywriter_server: tuple[str, CopywriterControl]) -> Settings:
    return llm_settings(settings, copywriter_server[0])


def _arms(runtime: Runtime) -> dict[int, Arm]:
    with Session(runtime.engine) as session:
        return {arm.id: arm for arm in session.exec(select(Arm)) if arm.id is not None}


def _served(client: TestClient, decide: dict[str, str], runtime: Runtime, key: str) -> set[int]:
    response = client.post(
        "/v1/choose/batch",
        json={"experiment": key, "units": [{} for _ in range(1500)]},
        headers=decide,
    )
    assert response.status_code == 200, response.text
    runtime.decision_log.flush()
    return {d["arm"]["id"] for d in response.json()["decisions"]}


def _mark_eligible(runtime: Runtime, experiment_id: int, since: dict[int, float]) -> None:
    """Write a snapshot whose retirement verdicts call these arms eligible since `hours` ago."""
    now = utcnow()
    with Session(runtime.engine) as session:
        latest = snapshots_repo.latest(session, experiment_id=experiment_id)
        assert latest is not None
        payload = dict(latest.payload)
        payload["retirement"] = {
            str(arm_id): {"eligible": True, "since": (now - timedelta(hours=hours)).isoformat()}
            for arm_id, hours in since.items()
        }
        snapshots_repo.insert_next(
            session, experiment_id=experiment_id, epoch=latest.epoch, payload=payload
        )
        session.commit()


def _completed_runs(runtime: Runtime, experiment_id: int, n: int) -> None:
    with Session(runtime.engine) as session:
        for i in range(n):
            finished = utcnow() - timedelta(hours=i + 1)
            session.add(
                LoopRun(
                    experiment_id=experiment_id,
                    status="succeeded",
                    started_at=finished,
                    finished_at=finished,
                )
            )
        session.commit()


def test_approve_with_an_edit_goes_live_and_is_served(
    client: TestClient, admin, decide, ingest, runtime: Runtime, copywriter: CopywriterControl
):
    exp = seed_experiment(client, admin, decide, ingest, runtime)
    run_loop(client, admin, exp["key"])
    proposal = pending(client, admin, exp["key"])[0]
    original = proposal["content"]
    edited = "Want a sneak peek at the travel-ready capsule?"
    response = client.post(
        f"/v1/proposals/{proposal['id']}/approve",
        json={"content": edited, "note": "tightened"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "approved"
    assert body["content"] == original  # the original stays beside the edit
    assert body["edited_content"] == edited
    assert body["decided_by"] == "test admin"
    assert "question" in body["tags"]
    arm = _arms(runtime)[proposal["arm_id"]]
    assert arm.status == "live"
    assert arm.content == edited
    assert proposal["arm_id"] in _served(client, decide, runtime, exp["key"])  # warm-up traffic
    history = client.get(
        f"/v1/experiments/{exp['key']}/arms/{arm.id}/history", headers=admin
    ).json()
    assert [h["to_status"] for h in history] == ["proposed", "live"]
    assert len(pending(client, admin, exp["key"])) == 2


def test_rejection_reason_reaches_the_next_prompt(
    client: TestClient, admin, decide, ingest, runtime: Runtime, copywriter: CopywriterControl
):
    exp = seed_experiment(client, admin, decide, ingest, runtime)
    run_loop(client, admin, exp["key"])
    proposal = pending(client, admin, exp["key"])[0]
    reason = "too pushy for lapsed shoppers"
    response = client.post(
        f"/v1/proposals/{proposal['id']}/reject", json={"reason": reason}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "rejected"
    assert response.json()["reason"] == reason
    assert _arms(runtime)[proposal["arm_id"]].status == "rejected"

    run_loop(client, admin, exp["key"])
    data = read_data_block(copywriter.last_request)
    assert {"content": proposal["content"], "reason": reason} in data["rejected_variants"]
    # the two still pending are listed as waiting, so they are not proposed again
    waiting = {a["content"] for a in data["arms_without_enough_evidence"]}
    assert {p["content"] for p in pending(client, admin, exp["key"])[:2]} <= waiting


def test_retirement_needs_a_day_and_two_runs_then_a_reviewer(
    client: TestClient, admin, decide, ingest, runtime: Runtime, copywriter: CopywriterControl
):
    exp = seed_experiment(client, admin, decide, ingest, runtime)
    loser, recent = exp["arms"][3]["id"], exp["arms"][4]["id"]
    _mark_eligible(runtime, exp["id"], {loser: 30, recent: 2})
    _completed_runs(runtime, exp["id"], 1)
    run_loop(client, admin, exp["key"])
    assert read_data_block(copywriter.last_request)["retirement_eligible_arm_ids"] == []

    run = run_loop(client, admin, exp["key"])  # now two completed runs since `since`
    assert read_data_block(copywriter.last_request)["retirement_eligible_arm_ids"] == [loser]
    retire = [p for p in pending(client, admin, exp["key"]) if p["kind"] == "retire_arm"]
    assert [(p["arm_id"], p["loop_run_id"]) for p in retire] == [(loser, run["id"])]
    assert "proposer: clearly behind the leader" in retire[0]["rationale"]
    assert _arms(runtime)[loser].status == "live"  # auto_retire is off: a human decides

    again = run_loop(client, admin, exp["key"])
    assert any("already pending" in d["reason"] for d in again["dropped"])

    response = client.post(f"/v1/proposals/{retire[0]['id']}/approve", headers=admin)
    assert response.status_code == 200, response.text
    assert _arms(runtime)[loser].status == "retired"
    assert loser not in _served(client, decide, runtime, exp["key"])


def test_auto_retire_and_auto_approve_within_the_cap(
    client: TestClient, admin, decide, ingest, runtime: Runtime, copywriter: CopywriterControl
):
    exp = seed_experiment(
        client,
        admin,
        decide,
        ingest,
        runtime,
        auto_approve=True,
        auto_retire=True,
        max_live_arms=6,
    )
    loser = exp["arms"][3]["id"]
    _mark_eligible(runtime, exp["id"], {loser: 48})
    _completed_runs(runtime, exp["id"], 2)
    run = run_loop(client, admin, exp["key"])
    assert run["status"] == "succeeded"
    assert run["output"]["retired_arm_ids"] == [loser]
    (live_id,) = run["output"]["live_arm_ids"]  # the retirement freed one place
    arms = _arms(runtime)
    assert arms[loser].status == "retired"
    assert arms[live_id].status == "live"
    assert arms[live_id].origin == "llm"
    assert sum(a.status == "live" for a in arms.values()) == 6
    kept = pending(client, admin, exp["key"])
    assert len(kept) == 2
    assert all(arms[p["arm_id"]].status == "proposed" for p in kept)
    served = _served(client, decide, runtime, exp["key"])
    assert live_id in served
    assert loser not in served
    # approving one of the kept proposals would break the cap
    response = client.post(f"/v1/proposals/{kept[0]['id']}/approve", headers=admin)
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"field": "max_live_arms"}


def test_learnings_as_json_and_markdown(
    client: TestClient, admin, decide, ingest, runtime: Runtime, copywriter: CopywriterControl
):
    exp = seed_experiment(client, admin, decide, ingest, runtime)
    run_loop(client, admin, exp["key"])
    url = f"/v1/experiments/{exp['key']}/learnings"
    as_json = client.get(url, headers=admin)
    assert as_json.headers["content-type"].startswith("application/json")
    claim = as_json.json()["learnings"][0]["claim"]
    by_query = client.get(url, params={"format": "markdown"}, headers=admin)
    by_accept = client.get(url, headers={**admin, "Accept": "text/markdown"})
    for response in (by_query, by_accept):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/markdown")
        text = response.text
        assert text.startswith(f"# Learnings: {exp['key']}\n")
        assert f"### L1: {claim}" in text
        assert (
            "| arm | exposures | successes | observed rate | estimated rate "
            "| 95% interval | maturity |"
        ) in text
        for arm in exp["arms"][:3]:
            assert f"| {arm['id']} | " in text


def test_two_replicas_race_for_the_lease(
    client: TestClient, admin, decide, ingest, runtime: Runtime, copywriter: CopywriterControl
):
    exp = seed_experiment(client, admin, decide, ingest, runtime)
    other = Runtime(runtime.settings, engine=runtime.engine)
    copywriter.slow_seconds = 1.0
    copywriter.script(SLOW)
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(other.loop.run(exp["key"])))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not copywriter.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert copywriter.requests, "the first replica never called the LLM"
        response = client.post(f"/v1/experiments/{exp['key']}/loop-runs", headers=admin)
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "conflict"
        assert response.json()["error"]["details"] == {"field": "experiment"}
    finally:
        thread.join(timeout=20)
        other.stop()
    assert results[0].status == "succeeded"
    runs = client.get(f"/v1/experiments/{exp['key']}/loop-runs", headers=admin).json()["runs"]
    assert len(runs) == 1
    assert len(copywriter.requests) == 1
    # the lease was released: this replica can run now
    assert run_loop(client, admin, exp["key"])["status"] == "succeeded"


def test_scheduler_runs_experiments_on_their_cadence(
    client: TestClient, admin, decide, ingest, runtime: Runtime, copywriter: CopywriterControl
):
    exp = seed_experiment(client, admin, decide, ingest, runtime, loop_cadence_hours=6)
    seed_experiment(client, admin, decide, ingest, runtime, key="no-cadence", sends=60)
    scheduler = runtime.loop_scheduler
    assert scheduler.due() == [exp["key"]]
    (run,) = scheduler.tick()
    assert run.trigger == "schedule"
    assert run.status == "succeeded"
    assert scheduler.due() == []
    assert scheduler.due(utcnow() + timedelta(hours=7)) == [exp["key"]]


def test_an_approved_edit_retires_the_original_wording_for_good(
    client: TestClient, admin, decide, ingest, runtime: Runtime, copywriter: CopywriterControl
):
    exp = seed_experiment(client, admin, decide, ingest, runtime)
    run_loop(client, admin, exp["key"])
    proposal = pending(client, admin, exp["key"])[0]
    original = proposal["content"]
    edited = "Want a sneak peek at the travel-ready capsule?"
    response = client.post(
        f"/v1/proposals/{proposal['id']}/approve", json={"content": edited}, headers=admin
    )
    assert response.status_code == 200, response.text
    # The copywriter proposes its last texts again, word for word: the original wording is
    # dropped as a duplicate of the text the reviewer replaced, and neither text comes back.
    copywriter.script(REPEAT)
    run = run_loop(client, admin, exp["key"])
    texts = [p["content"] for p in pending(client, admin, exp["key"])]
    assert texts.count(original) == 0
    assert texts.count(edited) == 0
    dropped = [d for d in run["dropped"] if d["subject"] == original]
    assert len(dropped) == 1, run["dropped"]
    assert dropped[0]["reason"].startswith("near-duplicate of rejected proposal")
    # The prompt listed it among the rejected texts, with the edit that replaced it.
    listed = read_data_block(copywriter.last_request)["rejected_variants"]
    assert listed == [{"content": original, "reason": f"replaced by a reviewer's edit: {edited!r}"}]
