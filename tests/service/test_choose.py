"""Deciding end to end through the real app."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from service.runtime import Runtime
from tests.service.factories import create_random_experiment


def test_choose_returns_a_signed_decision(client: TestClient, admin, decide, runtime: Runtime):
    exp = create_random_experiment(client, admin, arms=3)
    response = client.post("/v1/choose", json={"experiment": exp["key"]}, headers=decide)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "decision_id",
        "arm",
        "propensity",
        "explored",
        "policy_version",
        "fallback",
    }
    assert len(body["decision_id"]) <= 80
    assert "=" not in body["decision_id"]
    base64.urlsafe_b64decode(body["decision_id"] + "==")
    assert body["arm"]["id"] in {a["id"] for a in exp["arms"]}
    assert abs(body["propensity"] - 1 / 3) < 1e-9  # no data yet: uniform
    assert body["fallback"] is False
    token = runtime.signer.verify(body["decision_id"])
    assert token.arm_id == body["arm"]["id"]
    assert runtime.decision_log.flush() == 1


def test_keyed_decisions_are_idempotent(client: TestClient, admin, decide, runtime: Runtime):
    exp = create_random_experiment(client, admin, arms=4)
    params = {"experiment": exp["key"], "unit_id": "user-1", "send_id": "send-9"}
    first = client.get("/v1/choose", params=params, headers=decide).json()
    again = client.get("/v1/choose", params=params, headers=decide).json()
    posted = client.post("/v1/choose", json=params, headers=decide).json()
    assert first["decision_id"] == again["decision_id"] == posted["decision_id"]
    assert first["arm"] == again["arm"] == posted["arm"]
    # a second replica (fresh runtime, empty caches) answers the same
    other = Runtime(runtime.settings, engine=runtime.engine)
    other.refresher.reload()
    from service.decisions.decider import Unit

    choice = other.decider.choose(exp["key"], [Unit("user-1", "send-9")])[0]
    assert choice.decision_id == first["decision_id"]
    from sqlmodel import Session, select

    from service.models import Decision, StatBucket

    with Session(runtime.engine) as session:
        assert len(session.exec(select(Decision)).all()) == 1
        exposures = [b for b in session.exec(select(StatBucket)) if b.metric == "exposure"]
        assert sum(b.count for b in exposures) == 1


def test_batch_in_order_and_paused_falls_back(client: TestClient, admin, decide, runtime: Runtime):
    exp = create_random_experiment(client, admin, arms=2)
    units = [{"unit_id": f"u{i}"} for i in range(500)]
    response = client.post(
        "/v1/choose/batch", json={"experiment": exp["key"], "units": units}, headers=decide
    )
    assert response.status_code == 200
    decisions = response.json()["decisions"]
    assert len(decisions) == 500
    assert runtime.decision_log.flush() == 500
    assert client.post(f"/v1/experiments/{exp['key']}/pause", headers=admin).status_code == 200
    body = client.post("/v1/choose", json={"experiment": exp["key"]}, headers=decide).json()
    assert body["fallback"] is True
    control = next(a for a in exp["arms"] if a["control"])
    assert body["arm"]["id"] == control["id"]
    assert runtime.decision_log.pending == 0


def test_unknown_experiment_is_404(client: TestClient, decide):
    response = client.post("/v1/choose", json={"experiment": "nope"}, headers=decide)
    assert response.status_code == 404
    assert response.json()["error"]["details"] == {"field": "experiment"}
