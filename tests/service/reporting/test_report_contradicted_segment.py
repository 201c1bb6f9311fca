"""A segment whose delay fit the data contradict, through the real app: its numbers, not only
its labels, get the all-traffic case's treatment.

Segment "old" was sent two days ago (clicks over hours, median 2 h); segment "new" is read at
the second of its last click, 10 to 12 s after its send. The fit (median about 1.7 h) puts
F(12 s) near 1e-13, so the new segment's arms have more clicks than effective exposures: its
own rows already spanned "a slow wave" to "nothing more to come", but on main all traffic
pooled the new segment's clicks with next to no exposures: arm 4, 4.1% observed over both
sends, read 15.4% (12.8% to 18.3%), above even the slow wave's 11.5%, at a maturity of 0.26
(0.26 to 0.28); the evaluation's policy value read 8.0% (7.0% to 9.1%), and the lift over
control +11.7 points (8.7 to 14.7) where the observed difference is 1.4.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bandits.delay_model import MATURE_SHARE, TOO_EARLY
from service.core.clock import ManualClock
from service.core.runtime import Runtime
from tests.service.factories import create_random_experiment
from tests.service.reporting.test_report_delay import DAY, fast_clicks
from tests.service.reporting.test_report_first_snapshot import EVERY


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DAY)


def _send(
    client: TestClient, decide: dict[str, str], runtime: Runtime, key: str, tier: str
) -> list[dict[str, Any]]:
    units = [
        {"unit_id": f"{tier}{i}", "send_id": tier, "context": {"tier": tier}} for i in range(3000)
    ]
    response = client.post(
        "/v1/choose/batch", json={"experiment": key, "units": units}, headers=decide
    )
    assert response.status_code == 200, response.text
    runtime.decision_log.flush()
    decisions: list[dict[str, Any]] = response.json()["decisions"]
    return decisions


def _post(client: TestClient, ingest: dict[str, str], events: list[dict[str, Any]]) -> None:
    response = client.post("/v1/events", json=events, headers=ingest)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(events)


def contradicted_segment(
    client: TestClient,
    admin: dict[str, str],
    decide: dict[str, str],
    ingest: dict[str, str],
    runtime: Runtime,
    clock: ManualClock,
) -> dict[str, Any]:
    old = DAY.replace(hour=12) - timedelta(days=2)
    clock.set(old)
    exp = create_random_experiment(client, admin, arms=4, segment_attribute="tier")
    arm_ids = [a["id"] for a in exp["arms"]]
    rng = np.random.default_rng(3)
    events = []
    for i, d in enumerate(_send(client, decide, runtime, exp["key"], "old")):
        if rng.random() < 0.03:
            delay = timedelta(hours=float(np.exp(rng.normal(np.log(2.0), 1.0))))
            at = (old + delay).isoformat()
            events.append(
                {
                    "event_id": f"o{i}",
                    "decision_id": d["decision_id"],
                    "type": "click",
                    "occurred_at": at,
                }
            )
    sent = DAY.replace(hour=12, minute=7)
    clock.set(sent)
    _post(client, ingest, events)
    runtime.refresher.tick()
    fresh = _send(client, decide, runtime, exp["key"], "new")
    clicks = fast_clicks(
        fresh, arm_ids, sent, seconds=(10.0, 12.0), rng=np.random.default_rng(7), every=EVERY
    )
    clock.set(sent + timedelta(seconds=12))
    _post(client, ingest, clicks)
    runtime.refresher.tick()
    report = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin)
    assert report.status_code == 200, report.text
    body: dict[str, Any] = report.json()
    return body


def test_a_contradicted_segment_carries_its_bounds_into_all_traffic_and_the_evaluation(
    client: TestClient, admin, decide, ingest, runtime: Runtime, clock: ManualClock
):
    report = contradicted_segment(client, admin, decide, ingest, runtime, clock)
    assert report["delay"]["contradicted"] == ["new"], report["delay"]["contradicted"]
    new = {r["arm_id"]: r for r in report["segments"]["new"]}
    old = {r["arm_id"]: r for r in report["segments"]["old"]}
    for row in new.values():
        assert row["judgement"] == TOO_EARLY, row
    # Each arm's all-traffic rate under either bound: "nothing more to come" (observed) and
    # "a slow wave" (the new segment's exposures at its lowest maturity, the old ones' own).
    slow_total, all_total = 0.0, 0.0
    for row in report["arms"]:
        a, b = old[row["arm_id"]], new[row["arm_id"]]
        slow_exposures = a["exposures"] * a["maturity"] + b["exposures"] * b["maturity_low"]
        slow = row["successes"] / max(slow_exposures, row["successes"])
        most = row["observed_rate"]
        assert row["estimate_low"] <= most, (row, most)
        assert slow <= row["estimate_high"], (row, slow)
        assert row["estimated_rate"] <= slow, (row, slow)  # never past what a slow wave gives
        assert row["maturity_low"] < row["maturity"] < row["maturity_high"], row
        slow_total += slow_exposures
        all_total += row["exposures"]
    clicks = sum(r["successes"] for r in report["arms"])
    evaluation = report["evaluation"]
    policy = evaluation["lift"]["policy"]
    most, slow = clicks / all_total, clicks / slow_total
    assert policy["ci_low"] <= most, (policy, most)
    assert slow <= policy["ci_high"], (policy, slow)
    assert policy["value"] <= slow, (policy, slow)
    assert evaluation["delay"]["contradicted"] == ["new"]
    # The page states one maturity: the evaluation's is the arms' exposure-weighted one.
    arms = report["arms"]
    weighted = sum(r["maturity"] * r["exposures"] for r in arms) / all_total
    assert evaluation["maturity"] == pytest.approx(weighted, rel=0.02)
    assert 'In segment "new"' in report["correction"], report["correction"]
    # All traffic's arms are labelled on the low end of their range: arm 4 read "judged" at a
    # central maturity of 0.52 while the new segment's share put its low end at 0.35.
    assert any(r["maturity"] >= MATURE_SHARE > r["maturity_low"] for r in arms), arms
    for row in arms:
        if row["maturity_low"] < MATURE_SHARE:
            assert row["judgement"] == TOO_EARLY, row
