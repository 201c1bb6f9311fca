"""Managing experiments and arms through the admin API."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.core.runtime import Runtime
from service.models import ExperimentEpoch
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many


def test_create_list_read_returns_arm_ids(client: TestClient, admin):
    exp = create_random_experiment(client, admin, arms=3, key="spring-sale")
    assert [a["status"] for a in exp["arms"]] == ["live"] * 3
    assert len({a["id"] for a in exp["arms"]}) == 3
    assert sum(a["control"] for a in exp["arms"]) == 1
    assert exp["exploration_share"] == 0.10
    assert exp["primary_metric"] == "click"
    assert exp["exposure_event"] == "decision"
    assert exp["attribution_window_hours"] == 168
    assert exp["min_exposures"] == 500
    assert exp["min_successes"] == 5
    assert exp["max_live_arms"] == 8
    assert {g["metric"] for g in exp["guardrails"]} == {"unsubscribe", "complaint"}
    listed = client.get("/v1/experiments", headers=admin).json()["experiments"]
    assert [e["key"] for e in listed] == ["spring-sale"]
    read = client.get("/v1/experiments/spring-sale", headers=admin).json()
    assert read["arms"] == exp["arms"]


def test_patch_measured_settings_starts_a_new_epoch(
    client: TestClient, admin, decide, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2)
    decide_many(client, decide, runtime, exp["key"], 10)
    same = client.patch(
        f"/v1/experiments/{exp['key']}", json={"exploration_share": 0.2}, headers=admin
    ).json()
    assert same["epoch"] == 1
    assert same["exploration_share"] == 0.2
    changed = client.patch(
        f"/v1/experiments/{exp['key']}",
        json={"primary_metric": "conversion", "conversion_name": "purchase"},
        headers=admin,
    ).json()
    assert changed["epoch"] == 2
    decisions = decide_many(client, decide, runtime, exp["key"], 5)
    assert all(runtime.signer.verify(d["decision_id"]).epoch == 2 for d in decisions)
    report = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin).json()
    assert sum(r["exposures"] for r in report["arms"]) == 0  # the new epoch starts empty
    with Session(runtime.engine) as session:
        epochs = session.exec(select(ExperimentEpoch)).all()
        assert [e.epoch for e in epochs] == [1, 2]
        assert epochs[1].measured["primary_metric"] == "conversion"


def test_pause_resume_archive_and_fail_open(client: TestClient, admin, decide, runtime: Runtime):
    exp = create_random_experiment(client, admin, arms=2)
    key = exp["key"]
    assert client.post(f"/v1/experiments/{key}/pause", headers=admin).json()["status"] == "paused"
    paused = client.post("/v1/choose", json={"experiment": key}, headers=decide).json()
    assert paused["fallback"] is True
    assert runtime.decision_log.pending == 0
    assert client.post(f"/v1/experiments/{key}/resume", headers=admin).json()["status"] == "running"
    assert (
        client.post("/v1/choose", json={"experiment": key}, headers=decide).json()["fallback"]
        is False
    )
    for arm in exp["arms"]:
        client.post(
            f"/v1/experiments/{key}/arms/{arm['id']}/suspend",
            json={"reason": "legal"},
            headers=admin,
        )
    none_live = client.post("/v1/choose", json={"experiment": key}, headers=decide).json()
    assert none_live["fallback"] is True
    assert none_live["arm"]["id"] == next(a["id"] for a in exp["arms"] if a["control"])
    assert (
        client.post(f"/v1/experiments/{key}/archive", headers=admin).json()["status"] == "archived"
    )
    assert (
        client.post("/v1/choose", json={"experiment": key}, headers=decide).json()["fallback"]
        is True
    )


def test_arms_add_edit_control_and_history(client: TestClient, admin, decide):
    exp = create_random_experiment(client, admin, arms=2, max_live_arms=3)
    key = exp["key"]
    added = client.post(
        f"/v1/experiments/{key}/arms",
        json={"content": "Don't miss out, {{first_name}}", "tags": ["personalized"]},
        headers=admin,
    )
    assert added.status_code == 201
    assert (
        client.post(
            f"/v1/experiments/{key}/arms", json={"content": "fourth"}, headers=admin
        ).status_code
        == 409
    )  # max_live_arms
    old = added.json()
    edited = client.post(
        f"/v1/experiments/{key}/arms/{old['id']}/edit",
        json={"content": "Don't miss out", "reason": "no placeholder"},
        headers=admin,
    ).json()
    assert edited["parent_id"] == old["id"]
    assert edited["tags"] == ["personalized"]
    arms = {a["id"]: a for a in client.get(f"/v1/experiments/{key}", headers=admin).json()["arms"]}
    assert arms[old["id"]]["status"] == "retired"
    assert arms[old["id"]]["content"] == "Don't miss out, {{first_name}}"  # never changes
    marked = client.post(f"/v1/experiments/{key}/arms/{edited['id']}/control", headers=admin)
    assert marked.json()["control"] is True
    arms = client.get(f"/v1/experiments/{key}", headers=admin).json()["arms"]
    assert [a["id"] for a in arms if a["control"]] == [edited["id"]]
    history = client.get(f"/v1/experiments/{key}/arms/{old['id']}/history", headers=admin).json()
    assert [h["to_status"] for h in history] == ["live", "retired"]
    assert "no placeholder" in history[-1]["reason"]
    served = {
        client.post("/v1/choose", json={"experiment": key}, headers=decide).json()["arm"]["id"]
        for _ in range(60)
    }
    assert old["id"] not in served
    assert edited["id"] in served
