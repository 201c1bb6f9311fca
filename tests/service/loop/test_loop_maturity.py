"""The loop reads the same honest figures as the report: on a young send it sees the
maturity, labels the arms too early to judge, and learns nothing until the evidence has
arrived. Real app, real openai SDK, scripted copywriter; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bandits.delay_model import fit_delay_model
from service.core.clock import ManualClock
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.core.vocabulary import EXPOSURE, OVERALL
from service.loop.gather import _maturities
from service.policy.inputs import StatRow
from simulation.copywriter import read_data_block
from simulation.copywriter_server import CopywriterControl
from tests.service.loop_fixtures import SEED_ARMS, llm_settings, run_loop

SENT = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SENT)


@pytest.fixture
def settings(settings: Settings, copywriter_server: tuple[str, CopywriterControl]) -> Settings:
    return llm_settings(settings, copywriter_server[0])


def email_clicks(decisions: list[dict[str, Any]], rates: dict[int, float]) -> list[dict]:
    """Every click the send will get: arm rates as given, delays log-normal (median 1 h)."""
    rng = np.random.default_rng(21)
    events = []
    for d in decisions:
        if rng.random() < rates[d["arm"]["id"]]:
            delay = timedelta(hours=float(rng.lognormal(0.0, 1.2)))
            events.append(
                {
                    "event_id": f"click-{len(events)}",
                    "decision_id": d["decision_id"],
                    "type": "click",
                    "occurred_at": (SENT + delay).isoformat(),
                }
            )
    return events


def post_due(client: TestClient, ingest, events: list[dict], now: datetime) -> None:
    due = [e for e in events if datetime.fromisoformat(e["occurred_at"]) <= now]
    if due:
        response = client.post("/v1/events", json=due, headers=ingest)
        assert response.status_code == 200, response.text


def test_a_young_send_is_too_early_to_judge_and_the_loop_learns_nothing(
    client: TestClient,
    admin,
    decide,
    ingest,
    runtime: Runtime,
    copywriter: CopywriterControl,
    clock: ManualClock,
):
    body = {
        "key": "young",
        "name": "Spring subject lines",
        "arms": [
            {"content": content, "tags": tags, "control": i == 3}
            for i, (content, tags, _rate) in enumerate(SEED_ARMS)
        ],
        "min_exposures": 100,
        "min_successes": 3,
    }
    created = client.post("/v1/experiments", json=body, headers=admin)
    assert created.status_code == 201, created.text
    experiment = created.json()
    rates = {
        arm["id"]: rate for arm, (_c, _t, rate) in zip(experiment["arms"], SEED_ARMS, strict=True)
    }
    # Keyed decisions: each unit's arm comes from its HMAC, so the send (and with it
    # the evidence the loop learns from) is the same on every run.
    response = client.post(
        "/v1/choose/batch",
        json={
            "experiment": "young",
            "units": [{"unit_id": f"u{i}", "send_id": "spring-1"} for i in range(3000)],
        },
        headers=decide,
    )
    assert response.status_code == 200, response.text
    decisions = response.json()["decisions"]
    events = email_clicks(decisions, rates)

    # Ten minutes after an email send: about a tenth of its clicks are in.
    clock.advance(10 / 60)
    post_due(client, ingest, events, clock.now())
    runtime.refresher.tick()
    young = run_loop(client, admin, "young")
    assert young["status"] == "succeeded", young
    data = read_data_block(copywriter.last_request)
    assert data["arms_ranked_worst_to_best"] == []
    waiting = data["arms_without_enough_evidence"]
    assert len(waiting) == len(SEED_ARMS)
    for arm in waiting:
        assert arm["maturity"] < 0.5, arm
        assert arm["judgement"].startswith("too early to judge"), arm
        assert "observed_rate" in arm
    learnings = client.get("/v1/experiments/young/learnings", headers=admin).json()
    assert learnings["learnings"] == []
    report = client.get("/v1/experiments/young/report", headers=admin).json()
    assert {r["judgement"] for r in report["arms"]} == {"too early to judge"}

    # Eight days on, every click inside the window has arrived: now the loop may learn.
    clock.advance(8 * 24)
    post_due(client, ingest, events, clock.now())
    runtime.refresher.tick()
    mature = run_loop(client, admin, "young")
    assert mature["status"] == "succeeded", mature
    data = read_data_block(copywriter.last_request)
    ranked = data["arms_ranked_worst_to_best"]
    assert len(ranked) == len(SEED_ARMS)
    assert all(arm["maturity"] == 1.0 for arm in ranked)
    for arm in ranked:
        assert {"observed_rate", "estimated_rate", "interval_95"} <= arm.keys()
    learnings = client.get("/v1/experiments/young/learnings", headers=admin).json()
    (learning,) = learnings["learnings"]
    assert "question" in learning["claim"]
    assert all(e["maturity"] == 1.0 for e in learning["evidence"])
    markdown = client.get(
        "/v1/experiments/young/learnings",
        headers={**admin, "Accept": "text/markdown"},
    )
    assert "| observed rate | estimated rate | 95% interval | maturity |" in markdown.text


def test_arms_the_snapshot_no_longer_serves_get_their_maturity_from_its_delay_curve():
    """A just-retired arm's last cohorts may be young: the loop reads how young."""
    now = SENT + timedelta(minutes=20)
    rng = np.random.default_rng(3)
    delays = rng.lognormal(0.0, 1.2, 400)
    ages = np.minimum(delays + rng.uniform(0, 300, 400), 168.0)
    delay = fit_delay_model(delays, ages, 168.0).to_json()
    rows = [
        # arm 1: sent 20 minutes ago (offset 0 into the 09:00 hour); arm 2: ten days ago
        StatRow(OVERALL, 1, SENT, EXPOSURE, 1000, 0.0),
        StatRow(OVERALL, 2, SENT - timedelta(days=10), EXPOSURE, 1000, 0.0),
    ]
    young, old = _maturities(rows, [1, 2], delay, now)
    assert young < 0.5
    assert old == 1.0
    assert list(_maturities(rows, [1, 2], None, now)) == [1.0, 1.0]
