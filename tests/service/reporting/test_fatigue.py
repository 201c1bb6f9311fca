"""Fatigue through the real app: an arm whose clicks fall each time the same units see it
is flagged with the evidence, an arm that does not wear out is not, and the loop run
proposes a refresh citing it. SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.core.clock import ManualClock
from service.core.runtime import Runtime
from service.deciding.decider import Unit

SENT = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SENT)


def test_an_arm_that_wears_out_is_flagged_and_the_loop_proposes_a_refresh(
    client: TestClient, admin, ingest, runtime: Runtime, clock: ManualClock
) -> None:
    rng = np.random.default_rng(8)
    body = {
        "key": "wearing",
        "name": "Weekly newsletter subject",
        "arms": [
            {"content": "Your weekly picks", "control": True},
            {"content": "Fresh this week: the edit"},
        ],
        "attribution_window_hours": 24,
        "min_exposures": 50,
    }
    created = client.post("/v1/experiments", json=body, headers=admin)
    assert created.status_code == 201, created.text
    wearing, steady = (arm["id"] for arm in created.json()["arms"])
    seen: dict[tuple[str, int], int] = defaultdict(int)
    events = []
    for send in range(6):
        units = [Unit(f"reader-{u}", f"issue-{send}") for u in range(500)]
        for unit, choice in zip(units, runtime.decider.choose("wearing", units), strict=True):
            earlier = seen[(unit.unit_id or "", choice.arm.id)]
            seen[(unit.unit_id or "", choice.arm.id)] += 1
            rate = 0.12 * 0.55**earlier if choice.arm.id == wearing else 0.06
            if rng.random() < rate:
                events.append(
                    {
                        "event_id": f"click-{len(events)}",
                        "decision_id": choice.decision_id,
                        "type": "click",
                        "occurred_at": (clock.now() + timedelta(minutes=5)).isoformat(),
                    }
                )
        clock.advance(24 * 7)
    response = client.post("/v1/events", json=events, headers=ingest)
    assert response.status_code == 200, response.text

    found = client.get("/v1/experiments/wearing/fatigue", headers=admin)
    assert found.status_code == 200, found.text
    arms = {item["arm_id"]: item for item in found.json()["arms"]}
    assert arms[wearing]["fatigued"] is True
    assert "repeat exposure" in arms[wearing]["evidence"]
    assert arms[wearing]["by_exposure"]["slope"] < 0
    assert arms[steady]["fatigued"] is False

    run = runtime.loop.run("wearing", trigger="api")
    refresh = [item for item in run.applied if item["kind"] == "refresh_arm"]
    assert [item["subject"] for item in refresh] == [f"arm {wearing}"]
    assert "repeat exposure" in refresh[0]["reason"]
