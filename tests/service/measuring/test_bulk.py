"""The batch write of events and first-event claims, and the body parser's fast path, on
SQLite and PostgreSQL: what is new, what was there, who claims a first event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.core.runtime import Runtime
from service.deciding import repository as decisions_repo
from service.measuring import bulk
from service.measuring.api_events import parse_events_body
from service.models import DeadLetter, FirstEvent, OutcomeEvent
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many, metric_total

AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def row(event_key: str, decision_id: str) -> dict[str, Any]:
    return {
        "provider": "api",
        "event_key": event_key,
        "decision_id": decision_id,
        "experiment_id": 1,
        "arm_id": 1,
        "epoch": 0,
        "segment": "all",
        "type": "click",
        "provider_type": "click",
        "name": None,
        "value": None,
        "machine": False,
        "occurred_at": AT,
        "received_at": AT,
        "raw_payload_id": None,
        "outcome": "accepted",
    }


def store(runtime: Runtime, rows: list[dict[str, Any]], metric: str = "click") -> bulk.Stored:
    claims = [((r["provider"], r["event_key"], r["decision_id"]), metric) for r in rows]
    with runtime.unit_of_work() as session:
        return bulk.store_events(session, rows=rows, claims=claims)


def test_only_new_rows_are_reported_and_claim(runtime: Runtime):
    first = store(runtime, [row("a", "d1"), row("b", "d2")])
    assert set(first.event_ids) == {("api", "a", "d1"), ("api", "b", "d2")}
    assert first.firsts == {
        ("d1", "click"): first.event_ids[("api", "a", "d1")],
        ("d2", "click"): first.event_ids[("api", "b", "d2")],
    }
    # One old row, one new row whose decision has its first click already, and two new
    # rows of one decision: only the lower id of those two claims.
    second = store(runtime, [row("a", "d1"), row("c", "d2"), row("e", "d3"), row("d", "d3")])
    assert set(second.event_ids) == {("api", "c", "d2"), ("api", "d", "d3"), ("api", "e", "d3")}
    lower = min(second.event_ids[("api", "d", "d3")], second.event_ids[("api", "e", "d3")])
    assert second.firsts == {("d3", "click"): lower}
    with Session(runtime.engine) as session:
        events = session.exec(select(OutcomeEvent)).all()
        firsts = {(f.decision_id, f.metric): f.event_id for f in session.exec(select(FirstEvent))}
    assert {(e.event_key, e.decision_id): e.id for e in events} == {
        ("a", "d1"): first.event_ids[("api", "a", "d1")],
        ("b", "d2"): first.event_ids[("api", "b", "d2")],
        **{(k, d): i for (_, k, d), i in second.event_ids.items()},
    }
    assert firsts == {**first.firsts, **second.firsts}
    assert all(e.occurred_at == AT and e.received_at == AT for e in events)


def test_a_batch_of_duplicates_adds_nothing(runtime: Runtime):
    rows = [row(f"k{i}", f"d{i}") for i in range(5)]
    store(runtime, rows)
    again = store(runtime, rows)
    assert again.event_ids == {}
    assert again.firsts == {}


def test_partly_duplicate_batches_count_each_event_once(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2)
    decisions = decide_many(client, decide, runtime, exp["key"], 20)
    events = [
        {"event_id": f"p{i}", "decision_id": d["decision_id"], "type": "click"}
        for i, d in enumerate(decisions)
    ]
    first = client.post("/v1/events", json=events[:12], headers=ingest).json()
    second = client.post("/v1/events", json=events[6:] + events[18:], headers=ingest).json()
    assert (first["accepted"], first["duplicates"]) == (12, 0)
    # 6 already stored, 8 new, and the last two twice in the same body.
    assert (second["accepted"], second["duplicates"]) == (8, 8)
    assert metric_total(runtime, "click") == 20
    with Session(runtime.engine) as session:
        assert len(session.exec(select(OutcomeEvent)).all()) == 20
        assert len(session.exec(select(FirstEvent)).all()) == 20


def test_decisions_are_looked_up_past_any_placeholder_limit(
    client: TestClient, admin, decide, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2)
    ids = [d["decision_id"] for d in decide_many(client, decide, runtime, exp["key"], 1200)]
    with Session(runtime.engine) as session:
        found = decisions_repo.get_many(session, ids=[*ids, "not-stored", ids[0]])
    assert set(found) == set(ids)
    assert all(found[i].experiment_id == exp["id"] for i in ids)


def test_bodies_the_fast_parser_refuses_are_read_as_before(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2)
    good = decide_many(client, decide, runtime, exp["key"], 1)[0]["decision_id"]
    long_number = "123456789012345678901234567890"
    body = (
        f'[{{"event_id": {long_number}, "decision_id": "{good}", "type": "click"}},'
        f' {{"event_id": "nul\\u0000", "decision_id": "{good}", "type": "click"}},'
        f' {{"event_id": "lone\\ud800", "decision_id": "{good}", "type": "click"}},'
        f' {{"event_id": "nan", "decision_id": "{good}", "type": "conversion", "value": NaN}},'
        f' {{"event_id": "ok", "decision_id": "{good}", "type": "click"}}]'
    )
    response = client.post(
        "/v1/events", content=body, headers={**ingest, "content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == 1
    rejected = {r["index"]: r for r in answer["rejected"]}
    assert sorted(rejected) == [0, 1, 2, 3]
    # The caller's number comes back with all its digits, as the standard parser read it.
    assert rejected[0]["event_id"] == long_number
    assert rejected[1]["reason"].startswith("event_id")
    assert "NUL" in rejected[1]["reason"]
    assert "surrogate" in rejected[2]["reason"]
    assert rejected[3]["reason"].startswith("value")
    with Session(runtime.engine) as session:
        kept = [d.event for d in session.exec(select(DeadLetter))]
    assert any(long_number in text for text in kept)


def test_the_fast_and_the_standard_parser_read_a_body_alike():
    now = datetime(2026, 3, 1, tzinfo=UTC)
    items = [
        {"event_id": "a", "decision_id": "x", "type": "conversion", "value": 12.5, "name": "buy"},
        {"event_id": "b", "type": "click", "occurred_at": "2026-02-28T10:00:00+02:00"},
        {"event_id": "c", "type": "open", "value": 1e300},
        {"event_id": "é✓", "decision_id": "y", "type": "delivered"},
        {"event_id": "d", "type": "bogus"},
    ]
    fast = parse_events_body(json.dumps(items).encode(), received_at=now, max_events=10)
    # A twenty-digit run anywhere sends the body to the standard parser.
    slow_body = json.dumps([*items, {"event_id": "e", "type": "click", "value": 10**20}])
    slow = parse_events_body(slow_body.encode(), received_at=now, max_events=10)
    assert fast[0] == slow[0][: len(fast[0])]
    assert fast[1] == slow[1]
