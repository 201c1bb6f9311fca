"""Events that arrive before their decision is written count once it lands, exactly once.

On SQLite and PostgreSQL: clicks posted before the flush, during a flush the database
stalls, for decisions that never land, outside the attribution window, and with exposure
event `delivered`; each against `stats rebuild`.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, func, select

from service.core.runtime import Runtime
from service.deciding.log import DecisionRecord
from service.measuring.rebuild import rebuild_stats
from service.models import OutcomeEvent, utcnow
from tests.service.factories import create_random_experiment
from tests.service.helpers import metric_total, stats_counter


def choose_unflushed(
    client: TestClient, decide: dict[str, str], key: str, n: int
) -> list[dict[str, Any]]:
    """Unkeyed decisions still in the decision log's memory (no flush yet)."""
    response = client.post(
        "/v1/choose/batch",
        json={"experiment": key, "units": [{"unit_id": f"u{i}"} for i in range(n)]},
        headers=decide,
    )
    assert response.status_code == 200, response.text
    return response.json()["decisions"]


def clicks(decisions: list[dict[str, Any]], prefix: str = "c") -> list[dict[str, Any]]:
    return [
        {"event_id": f"{prefix}{i}", "decision_id": d["decision_id"], "type": "click"}
        for i, d in enumerate(decisions)
    ]


def post(client: TestClient, ingest: dict[str, str], events: object) -> dict[str, Any]:
    response = client.post("/v1/events", json=events, headers=ingest)
    assert response.status_code == 200, response.text
    return response.json()


def outcomes(runtime: Runtime) -> dict[str, int]:
    with Session(runtime.engine) as session:
        stmt = select(OutcomeEvent.outcome, func.count()).group_by(OutcomeEvent.outcome)
        return {outcome: int(n) for outcome, n in session.exec(stmt)}


def assert_rebuild_agrees(runtime: Runtime) -> None:
    live = stats_counter(runtime)
    with runtime.unit_of_work() as session:
        rebuild_stats(session)
    assert stats_counter(runtime) == live


def test_clicks_before_the_flush_count_once_when_it_lands(
    client: TestClient, admin, decide, ingest, runtime: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=3)
    decisions = choose_unflushed(client, decide, exp["key"], 200)
    early = post(client, ingest, clicks(decisions))
    assert (early["accepted"], early["orphans"]) == (200, 200)
    assert metric_total(runtime, "click") == 0

    assert runtime.decision_log.flush() == 200
    assert metric_total(runtime, "exposure") == 200
    assert metric_total(runtime, "click") == 200
    assert outcomes(runtime) == {"accepted": 200}

    # Re-delivered (the ESP retries), a second flush, a rebuild: still once each.
    again = post(client, ingest, clicks(decisions))
    assert (again["accepted"], again["duplicates"]) == (0, 200)
    assert runtime.decision_log.flush() == 0
    assert metric_total(runtime, "click") == 200
    assert_rebuild_agrees(runtime)
    assert metric_total(runtime, "click") == 200


def test_duplicates_of_an_orphan_count_once(
    client: TestClient, admin, decide, ingest, runtime: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=2)
    decisions = choose_unflushed(client, decide, exp["key"], 5)
    events = clicks(decisions)
    first = post(client, ingest, events + events)  # duplicates inside one request too
    assert (first["accepted"], first["orphans"], first["duplicates"]) == (5, 5, 5)
    assert post(client, ingest, events)["duplicates"] == 5
    runtime.decision_log.flush()
    assert metric_total(runtime, "click") == 5
    assert_rebuild_agrees(runtime)


def test_an_orphan_whose_decision_never_lands_stays_uncounted(
    client: TestClient, admin, decide, ingest, runtime: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=2)
    arm = exp["arms"][0]["id"]
    lost = runtime.signer.mint(
        experiment_id=exp["id"],
        epoch=1,
        arm_id=arm,
        segment="",
        propensity=0.5,
        policy_version=1,
        issued_at=utcnow(),
    )
    landed = choose_unflushed(client, decide, exp["key"], 3)
    body = post(
        client, ingest, [*clicks(landed), {"event_id": "x", "decision_id": lost, "type": "click"}]
    )
    assert body["orphans"] == 4
    runtime.decision_log.flush()
    with runtime.unit_of_work() as session:
        rebuild_stats(session)
    assert metric_total(runtime, "click") == 3
    assert outcomes(runtime) == {"accepted": 3, "orphan": 1}


def test_orphans_take_the_outcome_they_would_have_had(
    client: TestClient, admin, ingest, runtime: Runtime
) -> None:
    """Attribution window from the decision's exposure: an orphan click that came after the
    window is late, not a success; with exposure event `delivered` the first event is the
    exposure."""
    exp = create_random_experiment(client, admin, arms=2, attribution_window_hours=1)
    delivered = create_random_experiment(client, admin, arms=2, exposure_event="delivered")
    three_hours_ago = utcnow() - timedelta(hours=3)
    old = [record(runtime, exp, three_hours_ago, i) for i in range(4)]
    fresh = [record(runtime, delivered, utcnow(), i) for i in range(6)]
    runtime.decision_log.append([*old, *fresh])
    events = [
        {"event_id": f"late{i}", "decision_id": r.id, "type": "click"} for i, r in enumerate(old)
    ] + [
        {"event_id": f"d{i}", "decision_id": r.id, "type": "delivered" if i % 2 else "click"}
        for i, r in enumerate(fresh)
    ]
    # Stored while the decisions are still in the log's memory.
    assert post(client, ingest, events)["orphans"] == 10
    runtime.decision_log.flush()

    assert outcomes(runtime) == {"late": 4, "accepted": 6}
    assert metric_total(runtime, "click") == 3  # the delivered experiment's three clicks
    assert metric_total(runtime, "delivered") == 3
    # `decision` exposures for the old cohort; `delivered`: the first event, once each.
    assert metric_total(runtime, "exposure") == 4 + 6
    assert_rebuild_agrees(runtime)


def record(runtime: Runtime, exp: dict[str, Any], at: Any, i: int) -> DecisionRecord:
    arm = exp["arms"][i % len(exp["arms"])]["id"]
    decision_id = runtime.signer.mint(
        experiment_id=exp["id"],
        epoch=1,
        arm_id=arm,
        segment="",
        propensity=0.5,
        policy_version=1,
        issued_at=at,
    )
    return DecisionRecord(
        id=decision_id,
        experiment_id=exp["id"],
        epoch=1,
        arm_id=arm,
        segment="",
        unit_hash=None,
        send_id=None,
        propensity=0.5,
        explored=False,
        policy_version=1,
        created_at=at,
        counts_exposure=exp["exposure_event"] == "decision",
    )


def test_clicks_during_a_stalled_flush_count_once(
    client: TestClient, admin, decide, ingest, runtime: Runtime
) -> None:
    """The flush's transaction is open and blocked (another session holds the decision
    table) while the clicks arrive and commit as orphans: the flush counts them."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: an ingest cannot commit during a flush")
    exp = create_random_experiment(client, admin, arms=3)
    decisions = choose_unflushed(client, decide, exp["key"], 100)
    stored: list[int] = []
    with runtime.engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE decision IN EXCLUSIVE MODE"))  # reads still pass
        flusher = threading.Thread(target=lambda: stored.append(runtime.decision_log.flush()))
        flusher.start()
        time.sleep(0.3)
        assert flusher.is_alive()  # stalled on the lock
        body = post(client, ingest, clicks(decisions))
        assert body["orphans"] == 100
        blocker.commit()
    flusher.join(timeout=30)
    assert stored == [100]
    assert metric_total(runtime, "click") == 100
    assert post(client, ingest, clicks(decisions))["duplicates"] == 100
    assert metric_total(runtime, "click") == 100
    assert_rebuild_agrees(runtime)


def needs_concurrent_writers(runtime: Runtime) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: an ingest and a flush never overlap")


def test_an_orphan_committed_after_the_flush_looked_is_counted_by_the_flush(
    client: TestClient, admin, decide, ingest, runtime: Runtime
) -> None:
    """The race: the flush's transaction looked for orphans before the click committed, and
    the click's request looked for the decision before the flush committed. The flush's
    second look, after its commit, counts it."""
    needs_concurrent_writers(runtime)
    exp = create_random_experiment(client, admin, arms=2)
    first, second = choose_unflushed(client, decide, exp["key"], 2)
    assert post(client, ingest, clicks([first], "a"))["orphans"] == 1
    stored: list[int] = []
    with runtime.engine.connect() as blocker:
        # Hold the first orphan's row: the flush stops when it claims it, after its look.
        blocker.execute(text("SELECT id FROM outcome_event WHERE outcome = 'orphan' FOR UPDATE"))
        flusher = threading.Thread(target=lambda: stored.append(runtime.decision_log.flush()))
        flusher.start()
        time.sleep(0.5)
        assert flusher.is_alive()
        assert post(client, ingest, clicks([second], "b"))["orphans"] == 1
        blocker.commit()
    flusher.join(timeout=30)
    assert stored == [2]
    assert metric_total(runtime, "click") == 2
    assert outcomes(runtime) == {"accepted": 2}
    assert_rebuild_agrees(runtime)


def test_an_orphan_whose_decision_landed_during_its_request_is_counted_by_the_request(
    client: TestClient, admin, decide, ingest, runtime: Runtime
) -> None:
    """The other side of the race: the click's request read no decision, then waited to
    store its event while the flush wrote the decision and found no orphan. The request's
    second look, after its commit, counts it."""
    needs_concurrent_writers(runtime)
    exp = create_random_experiment(client, admin, arms=2)
    decisions = choose_unflushed(client, decide, exp["key"], 3)
    bodies: list[dict[str, Any]] = []
    with runtime.engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE outcome_event IN EXCLUSIVE MODE"))  # reads still pass
        poster = threading.Thread(
            target=lambda: bodies.append(post(client, ingest, clicks(decisions)))
        )
        poster.start()
        time.sleep(0.5)
        assert poster.is_alive()  # decisions read (none yet), waiting to insert its events
        assert runtime.decision_log.flush() == 3
        blocker.commit()
    poster.join(timeout=30)
    assert bodies[0]["orphans"] == 3
    assert metric_total(runtime, "click") == 3
    assert outcomes(runtime) == {"accepted": 3}
    assert_rebuild_agrees(runtime)
