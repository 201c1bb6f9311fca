"""The decision log: one bad row never blocks the others, and memory stays bounded.

The poisonous decision is made below the HTTP layer (the door refuses such text): on
PostgreSQL through the decider, from a context value with a NUL (the segment it becomes
cannot be stored); on SQLite, which stores NULs, as a decision whose segment holds a lone
surrogate (which cannot be encoded), appended to the log directly.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlmodel import Session, select

from service.core.runtime import Runtime
from service.deciding.decider import Unit
from service.deciding.log import DecisionLog, DecisionRecord
from service.models import DeadLetter, Decision, utcnow
from tests.service.factories import create_random_experiment
from tests.service.helpers import metric_total


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def poison(runtime: Runtime, exp: dict[str, Any], n: int = 0) -> tuple[str, str]:
    """Log one decision the database cannot store; return its id and segment."""
    if runtime.engine.dialect.name == "postgresql":
        segment = f"go\x00ld{n}"
        [bad] = runtime.decider.choose(exp["key"], [Unit(f"u-bad{n}", None, {"tier": segment})])
        return bad.decision_id, segment
    segment = f"go\ud800ld{n}"
    arm, now = exp["arms"][0]["id"], utcnow()
    decision_id = runtime.signer.mint(
        experiment_id=exp["id"],
        epoch=1,
        arm_id=arm,
        segment="",
        propensity=0.5,
        policy_version=1,
        issued_at=now,
    )
    record = DecisionRecord(
        decision_id, exp["id"], 1, arm, segment, None, None, 0.5, False, 1, now, True
    )
    runtime.decision_log.append([record])
    return decision_id, segment


def choose(client: TestClient, decide: dict[str, str], key: str, tiers: list[str]) -> list[str]:
    units = [{"unit_id": f"u{i}", "context": {"tier": t}} for i, t in enumerate(tiers)]
    response = client.post(
        "/v1/choose/batch", json={"experiment": key, "units": units}, headers=decide
    )
    assert response.status_code == 200, response.text
    return [d["decision_id"] for d in response.json()["decisions"]]


def test_a_poisonous_decision_is_set_aside_and_every_good_one_stored_and_counted(
    client: TestClient, admin, decide, ingest, runtime: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=3, segment_attribute="tier")
    set_aside_before = sample("banditloop_decisions_set_aside_total")

    before = choose(client, decide, exp["key"], ["gold", "silver"] * 30)
    bad, unstorable = poison(runtime, exp)
    after = choose(client, decide, exp["key"], ["silver", "gold"] * 20)

    assert runtime.decision_log.flush() == 100
    assert runtime.decision_log.pending == 0
    assert runtime.decision_log.flush() == 0  # nothing kept for retry
    good = before + after
    with Session(runtime.engine) as session:
        assert {d.id for d in session.exec(select(Decision))} == set(good)
        letters = list(session.exec(select(DeadLetter)))
    assert metric_total(runtime, "exposure") == 100

    # Set aside once, with its reason, where operators look; escaped, never the raw text.
    assert [letter.source for letter in letters] == ["decision_log"]
    assert letters[0].reason.startswith("decision not stored: ")
    assert letters[0].reason.isascii()
    kept = json.loads(letters[0].event)
    assert kept["id"] == bad
    assert kept["segment"] == unstorable
    assert sample("banditloop_decisions_set_aside_total") == set_aside_before + 1

    events = [
        {"event_id": f"e{i}", "decision_id": d, "type": "click"} for i, d in enumerate([*good, bad])
    ]
    body = client.post("/v1/events", json=events, headers=ingest).json()
    assert (body["accepted"], body["orphans"]) == (101, 1)
    assert metric_total(runtime, "click") == 100


def test_every_row_of_a_batch_is_checked_when_several_are_bad(
    client: TestClient, admin, decide, runtime: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=2, segment_attribute="tier")
    good: list[str] = []
    for i in range(5):
        good += choose(client, decide, exp["key"], ["a", "b", "c"] * (i + 1))
        poison(runtime, exp, i)
    assert runtime.decision_log.flush() == len(good)
    with Session(runtime.engine) as session:
        assert len(list(session.exec(select(DeadLetter)))) == 5
    assert metric_total(runtime, "exposure") == len(good)


def test_the_pending_bound_drops_the_oldest_and_counts_them(runtime: Runtime) -> None:
    small = DecisionLog(runtime.engine, flush_ms=200, max_pending=10)
    dropped_before = sample("banditloop_decisions_dropped_total")
    records: list[Any] = [object() for _ in range(30)]  # never written: only counted
    small.append(records[:25])
    small.append(records[25:])
    assert small.pending == 10
    assert small._pending == records[20:]
    assert sample("banditloop_decisions_dropped_total") == dropped_before + 20


def test_every_flushed_decision_is_counted_on_each_database(
    client: TestClient, admin, decide, runtime: Runtime
) -> None:
    """`banditloop_decisions_flushed_total` counts what the thread writer stored, on SQLite
    too (it was counted only where the orphans are re-checked after commit)."""
    exp = create_random_experiment(client, admin, arms=2)
    flushed_before = sample("banditloop_decisions_flushed_total")
    choose(client, decide, exp["key"], [""] * 12)
    assert runtime.decision_log.flush() == 12
    assert sample("banditloop_decisions_flushed_total") == flushed_before + 12
