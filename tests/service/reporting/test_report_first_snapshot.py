"""The first snapshot of a push send, read seconds after its clicks, through the real app.

Last round's demo: clicks came back about 11 s after a keyed send over four arms, and the first
snapshot read 2.6%, 5.9%, 12.8% and 4.1% observed as 8.5%, 8.8%, 11.6% and 8.5% (upper ends
near 59%, the leader's estimate below its observed rate); four seconds later the same arms read
as observed. The delay model's doubt about a young fit is shared by every arm: it may widen
the intervals, never erase the arms' contrast.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.core.clock import ManualClock
from service.core.runtime import Runtime
from tests.service.factories import create_random_experiment
from tests.service.reporting.test_report_delay import DAY, fast_clicks, keyed_send

# One click per n-th decision of each arm: 2.6%, 5.9%, 12.5% and 4.2%, as in the demo.
EVERY = (38, 17, 8, 24)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DAY)


def first_snapshot(
    client: TestClient,
    admin: dict[str, str],
    decide: dict[str, str],
    ingest: dict[str, str],
    runtime: Runtime,
    clock: ManualClock,
    *,
    minute: int,
    seconds: tuple[float, float],
    posted: float,
    read: float,
) -> tuple[dict[str, Any], list[int]]:
    """A keyed send of 3,000 over four arms (default settings), clicks ``seconds`` after it,
    posted ``posted`` seconds after the send and read at ``read``: the first snapshot with
    any success."""
    sent = DAY.replace(hour=12, minute=minute)
    clock.set(sent)
    exp = create_random_experiment(client, admin, arms=4)
    arm_ids = [a["id"] for a in exp["arms"]]
    decisions = keyed_send(client, decide, runtime, exp["key"], 3000)
    rng = np.random.default_rng(minute)
    events = fast_clicks(decisions, arm_ids, sent, seconds=seconds, rng=rng, every=EVERY)
    clock.set(sent + timedelta(seconds=posted))
    response = client.post("/v1/events", json=events, headers=ingest)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(events)
    clock.set(sent + timedelta(seconds=read))
    runtime.refresher.tick()
    report = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin)
    assert report.status_code == 200, report.text
    return report.json(), arm_ids


# (minute of the hour, click delays in seconds, posted at, read at). The first two are last
# round's demo: clicks about 11 s after the send, read a second later (on the old code the
# arms read 8.4%, 8.7%, 11.3% and 8.4% at maturity 0.71, the leader below its 12.4%); the
# last two spread the clicks over 5-15 s and read two seconds after the last.
READS = (
    (4, (11.0, 11.5), 11.5, 12.5),
    (41, (11.0, 11.5), 11.5, 12.0),
    (17, (5.0, 15.0), 15.0, 17.0),
    (58, (5.0, 15.0), 15.0, 17.0),
)


def test_the_first_snapshot_of_a_push_send_keeps_each_arms_own_rate(
    client: TestClient, admin, decide, ingest, runtime: Runtime, clock: ManualClock
):
    """Every estimate within a factor of two of its observed rate, every interval covering
    it, the arms in their observed order, and the policy acting on the same figures (the
    leader has the largest P(best)). The delay model's doubt about so young a fit is shared
    by every arm: it may widen the intervals, not pull every arm onto the shared prior."""
    for minute, seconds, posted, read in READS:
        report, arm_ids = first_snapshot(
            client,
            admin,
            decide,
            ingest,
            runtime,
            clock,
            minute=minute,
            seconds=seconds,
            posted=posted,
            read=read,
        )
        rows = {r["arm_id"]: r for r in report["arms"]}
        ordered = [rows[a] for a in arm_ids]
        observed = np.array([r["observed_rate"] for r in ordered])
        estimate = np.array([r["estimated_rate"] for r in ordered])
        for row in ordered:
            assert row["observed_rate"] > 0, row
            assert row["observed_rate"] / 2 <= row["estimated_rate"], row
            assert row["estimated_rate"] <= row["observed_rate"] * 2, row
            assert row["estimate_low"] <= row["observed_rate"] <= row["estimate_high"], row
            assert row["posterior_mean"] == row["estimated_rate"]  # what the policy acts on
        # The arms keep their order (2.6% < 4.2% < 5.9% < 12.5%), and no estimate is below
        # what was already seen (successes only accumulate).
        np.testing.assert_array_equal(np.argsort(estimate), np.argsort(observed))
        assert np.all(estimate >= observed), (estimate, observed)
        probability_best = [r["probability_best"] for r in ordered]
        assert int(np.argmax(probability_best)) == int(np.argmax(observed)), probability_best
