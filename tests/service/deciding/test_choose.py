"""Deciding end to end through the real app."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.core.runtime import Runtime
from service.models import Decision
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
        "tracked",
        "holdout",
    }
    assert body["tracked"] is True
    assert body["holdout"] is False
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
    from service.deciding.decider import Unit

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


def test_paused_fallback_hands_out_no_decision_id_on_every_route(
    client: TestClient, admin, decide, runtime: Runtime
):
    """A fallback logs nothing, so an id could only ever produce orphans: none is given."""
    exp = create_random_experiment(client, admin, arms=2)
    key = exp["key"]
    assert client.post(f"/v1/experiments/{key}/pause", headers=admin).status_code == 200
    control = next(a["id"] for a in exp["arms"] if a["control"])
    answers = [
        client.post("/v1/choose", json={"experiment": key, "unit_id": "u1"}, headers=decide),
        client.get(
            "/v1/choose",
            params={"experiment": key, "unit_id": "u1", "send_id": "s1"},
            headers=decide,
        ),
    ]
    batch = client.post(
        "/v1/choose/batch",
        json={"experiment": key, "units": [{"unit_id": "u1", "send_id": "s1"}, {}]},
        headers=decide,
    )
    assert all(r.status_code == 200 for r in [*answers, batch])
    bodies = [r.json() for r in answers] + batch.json()["decisions"]
    assert len(bodies) == 4
    for body in bodies:
        assert body["decision_id"] is None
        assert body["tracked"] is False
        assert body["fallback"] is True
        assert body["arm"]["id"] == control
    assert runtime.decision_log.pending == 0
    with Session(runtime.engine) as session:
        assert session.exec(select(Decision)).all() == []

    # The OpenAPI schema says so too.
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ChooseOut"]
    assert "tracked" in schema["required"]
    assert {"type": "null"} in schema["properties"]["decision_id"]["anyOf"]

    assert client.post(f"/v1/experiments/{key}/resume", headers=admin).status_code == 200
    resumed = client.post("/v1/choose", json={"experiment": key}, headers=decide).json()
    assert resumed["tracked"] is True
    assert runtime.signer.verify(resumed["decision_id"]).arm_id == resumed["arm"]["id"]


def test_unknown_experiment_is_404(client: TestClient, decide):
    response = client.post("/v1/choose", json={"experiment": "nope"}, headers=decide)
    assert response.status_code == 404
    assert response.json()["error"]["details"] == {"field": "experiment"}


def test_single_unkeyed_decisions_are_logged_and_counted(
    client: TestClient, admin, decide, runtime: Runtime
):
    from prometheus_client import REGISTRY

    exp = create_random_experiment(client, admin, arms=3)

    def counted() -> float:
        return sum(
            sample.value
            for metric in REGISTRY.collect()
            if metric.name == "banditloop_decisions"
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels["experiment"] == exp["key"]
        )

    before = counted()
    answers = [
        client.post(
            "/v1/choose", json={"experiment": exp["key"], "unit_id": f"u{i}"}, headers=decide
        ).json()
        for i in range(30)
    ]
    assert runtime.decision_log.flush() == 30
    assert counted() - before == 30
    with Session(runtime.engine) as session:
        rows = {r.id: r for r in session.exec(select(Decision)).all()}
    for i, answer in enumerate(answers):
        row = rows[answer["decision_id"]]
        assert row.unit_hash == runtime.signer.unit_hash(f"u{i}")
        assert (row.arm_id, row.explored) == (answer["arm"]["id"], answer["explored"])
        assert row.propensity == answer["propensity"]
        assert not row.holdout
        assert row.send_id is None


def test_a_keyed_batch_stores_only_new_keys_and_says_which(
    client: TestClient, admin, decide, runtime: Runtime
):
    from service.core.sessions import unit_of_work
    from service.deciding.bulk import insert_keyed_decisions
    from service.deciding.records import DecisionRecord
    from service.models import utcnow

    exp = create_random_experiment(client, admin, arms=2)
    arm, now = exp["arms"][0]["id"], utcnow()

    def record(unit: int) -> DecisionRecord:
        unit_hash = runtime.signer.unit_hash(f"u{unit}")
        decision_id = runtime.signer.mint(
            experiment_id=exp["id"],
            epoch=1,
            arm_id=arm,
            segment="__all__",
            propensity=0.5,
            policy_version=1,
            issued_at=now,
            nonce=runtime.signer.keyed_digest(exp["id"], unit_hash, "s")[16:24],
        )
        return DecisionRecord(
            decision_id, exp["id"], 1, arm, "__all__", unit_hash, "s", 0.5, False, 1, now, True
        )

    first = [record(u) for u in range(10)]
    with unit_of_work(runtime.engine) as session:  # all new: copied straight in on PostgreSQL
        assert insert_keyed_decisions(session, first) == {r.id for r in first}
    again = [record(u) for u in range(5, 15)]  # a retry overlapping the first batch
    with unit_of_work(runtime.engine) as session:
        assert insert_keyed_decisions(session, again) == {r.id for r in again[5:]}
    with Session(runtime.engine) as session:
        assert len(session.exec(select(Decision)).all()) == 15
