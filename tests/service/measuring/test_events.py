"""Measuring through POST /v1/events, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.core.runtime import Runtime
from service.measuring.rebuild import rebuild_stats
from service.models import DeadLetter, Decision, OutcomeEvent
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many, metric_total, stats_counter, value_total


def post(client: TestClient, ingest: dict[str, str], events: object) -> dict:
    response = client.post("/v1/events", json=events, headers=ingest)
    assert response.status_code == 200, response.text
    return response.json()


def test_thousand_events_posted_fifty_times_count_once(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=3)
    decisions = decide_many(client, decide, runtime, exp["key"], 1000)
    events = [
        {"event_id": f"e{i}", "decision_id": d["decision_id"], "type": "click"}
        for i, d in enumerate(decisions)
    ]
    first = post(client, ingest, events)
    assert first["accepted"] == 1000
    assert first["duplicates"] == 0
    for _ in range(49):
        again = post(client, ingest, events)
        assert again["accepted"] == 0
        assert again["duplicates"] == 1000
    assert metric_total(runtime, "click") == 1000
    assert metric_total(runtime, "exposure") == 1000


def test_concurrent_duplicates_count_once(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2)
    decisions = decide_many(client, decide, runtime, exp["key"], 300)
    events = [
        {"event_id": f"c{i}", "decision_id": d["decision_id"], "type": "click"}
        for i, d in enumerate(decisions)
    ]
    results: list[dict] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(3):
                results.append(post(client, ingest, events))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r["accepted"] for r in results) == 300
    assert sum(r["duplicates"] for r in results) == 300 * 17
    assert metric_total(runtime, "click") == 300


def test_forged_and_altered_tokens_are_rejected(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2)
    good = decide_many(client, decide, runtime, exp["key"], 1)[0]["decision_id"]
    altered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    from service.core.tokens import DecisionSigner

    forger = DecisionSigner([("t1", "not-the-real-secret-at-all")])
    forged = forger.mint(
        experiment_id=1,
        epoch=1,
        arm_id=1,
        segment="",
        propensity=0.5,
        policy_version=1,
        issued_at=datetime.now(UTC),
    )
    body = post(
        client,
        ingest,
        [
            {"event_id": "a", "decision_id": altered, "type": "click"},
            {"event_id": "f", "decision_id": forged, "type": "click"},
            {"event_id": "m", "decision_id": "not a token!", "type": "click"},
            {"event_id": "n", "type": "click"},
            {"event_id": "g", "decision_id": good, "type": "click"},
        ],
    )
    assert body["accepted"] == 1
    assert body["ignored"] == 1
    assert [r["index"] for r in body["rejected"]] == [0, 1, 2]
    assert all("decision id" in r["reason"] for r in body["rejected"])
    with Session(runtime.engine) as session:
        assert len(session.exec(select(DeadLetter)).all()) == 3
    assert metric_total(runtime, "click") == 1


def test_invalid_event_is_rejected_naming_the_field(
    client: TestClient, admin, decide, ingest, runtime
):
    exp = create_random_experiment(client, admin, arms=2)
    good = decide_many(client, decide, runtime, exp["key"], 1)[0]["decision_id"]
    body = post(
        client,
        ingest,
        [
            {"event_id": "x", "decision_id": good, "type": "purchase"},
            {"event_id": "y", "decision_id": good, "type": "conversion", "value": "lots"},
            {"event_id": "z", "decision_id": good, "type": "click"},
        ],
    )
    assert body["accepted"] == 1
    assert body["rejected"][0]["reason"].startswith("type")
    assert body["rejected"][1]["reason"].startswith("value")


def test_events_wrapped_in_an_object_are_refused_with_a_pointer(
    client: TestClient, admin, decide, ingest, runtime
):
    """{"events": [...]} is how many APIs take a batch; ours takes the list itself. The caller
    is told so, and nothing is counted, instead of one event rejected for lacking an event_id."""
    exp = create_random_experiment(client, admin, arms=2)
    good = decide_many(client, decide, runtime, exp["key"], 1)[0]["decision_id"]
    event = {"event_id": "w1", "decision_id": good, "type": "click"}
    response = client.post("/v1/events", json={"events": [event]}, headers=ingest)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["message"].startswith("events: post the events themselves as the body")
    assert post(client, ingest, [event])["accepted"] == 1
    # An event that carries an unknown "events" key is still an event, rejected by its field.
    body = post(client, ingest, [{**event, "event_id": "w2", "events": []}])
    assert body["accepted"] == 0
    assert body["rejected"][0]["reason"].startswith("events")


def test_delivered_exposure_with_click_before_delivery(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2, exposure_event="delivered")
    decisions = decide_many(client, decide, runtime, exp["key"], 3)
    assert metric_total(runtime, "exposure") == 0  # nothing delivered yet
    d0, d1 = decisions[0]["decision_id"], decisions[1]["decision_id"]
    post(client, ingest, [{"event_id": "k0", "decision_id": d0, "type": "click"}])
    post(
        client,
        ingest,
        [
            {"event_id": "dl0", "decision_id": d0, "type": "delivered"},
            {"event_id": "dl1", "decision_id": d1, "type": "delivered"},
        ],
    )
    assert metric_total(runtime, "exposure") == 2
    assert metric_total(runtime, "click") == 1
    assert metric_total(runtime, "delivered") == 2


def test_conversion_value_posted_twice_counts_once(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(
        client, admin, arms=2, primary_metric="conversion", conversion_name="purchase"
    )
    d = decide_many(client, decide, runtime, exp["key"], 1)[0]["decision_id"]
    event = {
        "event_id": "o-1",
        "decision_id": d,
        "type": "conversion",
        "name": "purchase",
        "value": 49.5,
    }
    post(client, ingest, event)
    post(client, ingest, event)
    second = {**event, "event_id": "o-2", "value": 10.0}
    post(client, ingest, second)
    assert metric_total(runtime, "conversion:purchase") == 1
    assert metric_total(runtime, "conversion") == 1
    assert abs(value_total(runtime, "conversion") - 59.5) < 1e-9


def test_events_outside_the_window_are_late(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2, attribution_window_hours=1)
    d = decide_many(client, decide, runtime, exp["key"], 1)[0]["decision_id"]
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    inside = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    body = post(
        client,
        ingest,
        [
            {"event_id": "late", "decision_id": d, "type": "click", "occurred_at": later},
            {"event_id": "ok", "decision_id": d, "type": "open", "occurred_at": inside},
        ],
    )
    assert body["late"] == 1
    assert body["accepted"] == 2
    assert metric_total(runtime, "click") == 0
    assert metric_total(runtime, "open") == 1


def test_orphans_after_a_lost_flush_and_rebuild_equals_incremental(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=3, attribution_window_hours=12)
    kept = decide_many(client, decide, runtime, exp["key"], 200)
    # Decisions made but never flushed: as if the process crashed inside the loss window.
    lost = client.post(
        "/v1/choose/batch",
        json={"experiment": exp["key"], "units": [{} for _ in range(20)]},
        headers=decide,
    ).json()["decisions"]
    runtime.decision_log._pending.clear()  # the crash
    events = []
    for i, d in enumerate(kept):
        events.append({"event_id": f"o{i}", "decision_id": d["decision_id"], "type": "open"})
        if i % 3 == 0:
            events.append({"event_id": f"c{i}", "decision_id": d["decision_id"], "type": "click"})
        if i % 10 == 0:
            events.append(
                {"event_id": f"u{i}", "decision_id": d["decision_id"], "type": "unsubscribe"}
            )
    for i, d in enumerate(lost):
        events.append({"event_id": f"l{i}", "decision_id": d["decision_id"], "type": "click"})
    far = (datetime.now(UTC) + timedelta(hours=23)).isoformat()
    events.append(
        {
            "event_id": "late",
            "decision_id": kept[1]["decision_id"],
            "type": "click",
            "occurred_at": far,
        }
    )
    body = post(client, ingest, events)
    post(client, ingest, events[:50])  # duplicates
    assert body["orphans"] == 20
    assert body["late"] == 1
    assert metric_total(runtime, "click") == 67
    before = stats_counter(runtime)
    with Session(runtime.engine) as session:
        assert len(session.exec(select(Decision)).all()) == 200
        orphans = session.exec(select(OutcomeEvent).where(OutcomeEvent.outcome == "orphan"))
        assert len(orphans.all()) == 20
    with runtime.unit_of_work() as session:
        rebuild_stats(session)
    assert stats_counter(runtime) == before
    with runtime.unit_of_work() as session:
        rebuild_stats(session, experiment_id=exp["id"])
    assert stats_counter(runtime) == before
