"""Admin operations: privacy deletion, retention purge, dead letters, replay, metrics."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, select

from service.core.runtime import Runtime
from service.models import Decision, RawPayload, utcnow
from tests.service.factories import create_random_experiment
from tests.service.helpers import metric_total


def test_delete_unit_forgets_the_unit_but_keeps_the_counts(
    client: TestClient, admin, decide, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2)
    params = {"experiment": exp["key"], "unit_id": "alice@example.com", "send_id": "s1"}
    first = client.post("/v1/choose", json=params, headers=decide).json()
    client.post("/v1/choose", json={**params, "send_id": "s2"}, headers=decide)
    client.post("/v1/choose", json={**params, "unit_id": "bob", "send_id": "s1"}, headers=decide)
    with Session(runtime.engine) as session:
        hashes = {d.unit_hash for d in session.exec(select(Decision))}
        assert "alice@example.com" not in str(hashes)  # only keyed HMACs are stored
    deleted = client.delete("/v1/units/alice@example.com", headers=admin)
    assert deleted.status_code == 200
    assert deleted.json() == {"decisions_unlinked": 2}
    with Session(runtime.engine) as session:
        rows = session.exec(select(Decision)).all()
        assert len(rows) == 3
        assert sum(d.unit_hash is None for d in rows) == 2
    assert metric_total(runtime, "exposure") == 3
    # the unit is gone; asking again still answers (never a 500 on an id collision)
    again = client.post("/v1/choose", json=params, headers=decide)
    assert again.status_code == 200
    runtime.signer.verify(again.json()["decision_id"])
    assert first["fallback"] is False


def test_purge_deletes_only_raw_payloads_past_retention(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2)
    decision = client.post("/v1/choose", json={"experiment": exp["key"]}, headers=decide).json()
    runtime.decision_log.flush()
    for i in range(3):
        client.post(
            "/v1/events",
            json={"event_id": f"e{i}", "decision_id": decision["decision_id"], "type": "open"},
            headers=ingest,
        )
    with Session(runtime.engine) as session:
        oldest = session.exec(select(RawPayload)).first()
        assert oldest is not None
        session.execute(
            update(RawPayload)
            .where(RawPayload.id == oldest.id)
            .values(received_at=utcnow() - timedelta(days=31))
        )
        session.commit()
    purged = client.post("/v1/admin/purge", headers=admin).json()
    assert purged == {"raw_payloads_deleted": 1}
    with Session(runtime.engine) as session:
        assert len(session.exec(select(RawPayload)).all()) == 2
    assert metric_total(runtime, "open") == 1  # events and statistics stay


def test_dead_letters_are_listed_with_reasons(client: TestClient, admin, ingest):
    client.post(
        "/v1/events",
        json=[
            {"event_id": "x", "decision_id": "forged-token", "type": "click"},
            {"event_id": "y", "type": "teleport"},
        ],
        headers=ingest,
    )
    listed = client.get("/v1/admin/dead-letters", headers=admin).json()
    reasons = [d["reason"] for d in listed["dead_letters"]]
    assert len(reasons) == 2
    assert any("decision id" in r for r in reasons)
    assert any(r.startswith("type") for r in reasons)
    assert listed["next_after"] is None


def test_metrics_exposition(client: TestClient, admin, decide):
    exp = create_random_experiment(client, admin, arms=2)
    client.post("/v1/choose", json={"experiment": exp["key"]}, headers=decide)
    text = client.get("/metrics").text
    assert 'banditloop_decisions_total{arm="' in text
    assert "banditloop_choose_latency_seconds_bucket" in text
    assert "unit" not in [line.split("{")[0] for line in text.splitlines()]
    # No `_created` twin per counter and histogram: it doubles the series and says nothing
    # an operator reads (the process start time is already exported).
    assert not [line for line in text.splitlines() if "_created" in line.split("{")[0]]
