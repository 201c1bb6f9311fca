"""Two sends in one hour: the cohort is discounted by the spread of its ages, not its mean age.

Statistics are kept per exposure hour. F (the share of a decision's eventual evidence that has
arrived) is concave over most of its range, so an hour holding a send at 10:00 and one at
10:45 has had less of its evidence than F at its mean age says: read at 11:00 on email clocks,
about 0.31 of it where F(mean age) says 0.35. The buckets keep the squares of the decisions'
offsets, and the policy and the evaluation take F at the mean age plus and minus the spread.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from bandits.delay import DelayCDF
from service.core.clock import ManualClock
from service.core.runtime import Runtime
from service.measuring.rebuild import rebuild_stats
from tests.service.factories import create_random_experiment
from tests.service.helpers import stats_counter
from tests.service.reporting.test_report_delay import keyed_send

DAY = datetime(2026, 11, 2, tzinfo=UTC)
SIGMA = 1.2  # log-normal click delays, median one hour (DESIGN's email clocks)
CLICK_SHARE = 0.3  # one in three decisions clicks in the end: enough delays to fit F well
WINDOW_HOURS = 168.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DAY)


def true_cdf(hours: np.ndarray) -> np.ndarray:
    """The delays' own CDF, conditional on a click inside the attribution window."""
    inside = stats.norm.cdf(np.log(WINDOW_HOURS) / SIGMA)
    return np.asarray(stats.norm.cdf(np.log(np.maximum(hours, 1e-12)) / SIGMA) / inside)


def snapshot_cdf(report: dict[str, Any]) -> DelayCDF:
    delay = report["delay"]
    return DelayCDF(
        float(delay["window_hours"]),
        np.asarray(delay["edges_hours"], dtype=np.float64),
        np.asarray(delay["values"], dtype=np.float64),
        0.0,
        0.0,
    )


def post_clicks(
    client: TestClient,
    ingest: dict[str, str],
    decisions: list[dict[str, Any]],
    sent: datetime,
    read: datetime,
    rng: np.random.Generator,
    prefix: str,
) -> None:
    """Clicks for a share of the decisions, log-normal delays, those due by ``read``."""
    clicks = []
    for d in decisions:
        if rng.random() >= CLICK_SHARE:
            continue
        at = sent + timedelta(hours=float(rng.lognormal(0.0, SIGMA)))
        if at <= min(read, sent + timedelta(hours=WINDOW_HOURS)):
            clicks.append(
                {
                    "event_id": f"{prefix}{len(clicks)}",
                    "decision_id": d["decision_id"],
                    "type": "click",
                    "occurred_at": at.isoformat(),
                }
            )
    response = client.post("/v1/events", json=clicks, headers=ingest)
    assert response.status_code == 200, response.text


def two_sends_read_at_the_hour(
    client: TestClient,
    admin: dict[str, str],
    decide: dict[str, str],
    ingest: dict[str, str],
    runtime: Runtime,
    clock: ManualClock,
) -> tuple[dict[str, Any], dict[int, np.ndarray], dict[int, int]]:
    """A send of 3,000 eight days before (past the window: its clicks teach the delay model
    the whole curve), then sends of 1,500 at 10:00 and 10:45 with the clicks due by 11:00,
    read at 11:00. Returns the report, each arm's young decisions' ages (hours) at the read
    and each arm's matured decisions."""
    start = DAY.replace(hour=10)
    read = start + timedelta(hours=1)
    rng = np.random.default_rng(5)
    clock.set(start - timedelta(days=8))
    exp = create_random_experiment(client, admin, arms=3)  # default settings
    old = keyed_send(client, decide, runtime, exp["key"], 3000, send_id="old")
    matured: dict[int, int] = {}
    for d in old:
        matured[d["arm"]["id"]] = matured.get(d["arm"]["id"], 0) + 1
    post_clicks(client, ingest, old, start - timedelta(days=8), read, rng, "old")
    ages: dict[int, list[float]] = {}
    for name, minute in (("a", 0), ("b", 45)):
        sent = start + timedelta(minutes=minute)
        clock.set(sent)
        runtime.refresher.tick()
        decisions = keyed_send(client, decide, runtime, exp["key"], 1500, send_id=name)
        clock.set(read)
        post_clicks(client, ingest, decisions, sent, read, rng, name)
        for d in decisions:
            ages.setdefault(d["arm"]["id"], []).append((read - sent).total_seconds() / 3600.0)
    runtime.refresher.tick()
    report = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin)
    assert report.status_code == 200, report.text
    return report.json(), {arm: np.array(a) for arm, a in ages.items()}, matured


def test_two_sends_in_one_hour_are_discounted_by_their_spread_of_ages(
    client: TestClient, admin, decide, ingest, runtime: Runtime, clock: ManualClock
):
    """The young decisions' share of each arm's maturity is the mean of the snapshot's own F
    over their ages (to a few thousandths, where F at their mean age is 0.03 to 0.04 too
    high), within a point or two of the truth from the delays' own CDF; the evaluation on the
    same page states the arms' maturity; `stats rebuild` gives the same buckets, squares
    included, and the same figures."""
    report, ages, matured = two_sends_read_at_the_hour(
        client, admin, decide, ingest, runtime, clock
    )
    cdf = snapshot_cdf(report)
    rows = {r["arm_id"]: r for r in report["arms"]}
    weighted = exposures = 0.0
    for arm_id, young in ages.items():
        row = rows[arm_id]
        total = matured[arm_id] + young.size
        assert row["exposures"] == total
        # The matured decisions count 1 each (F = 1 past the window): the rest is the young.
        maturity = (row["maturity"] * total - matured[arm_id]) / young.size
        exact = float(cdf(young).mean())  # this F, over every young decision's age
        at_mean = float(cdf(young.mean()))  # what discounting by the mean age gives
        truth = float(true_cdf(young).mean())
        assert at_mean - exact > 0.02, (at_mean, exact)  # the case is one where it matters
        assert maturity == pytest.approx(exact, abs=0.005), (maturity, exact, at_mean)
        assert maturity == pytest.approx(truth, abs=0.015), (maturity, truth, at_mean)
        weighted += row["maturity"] * total
        exposures += total
    evaluation = report["evaluation"]
    assert evaluation["young"] == 3000
    assert evaluation["maturity"] == pytest.approx(weighted / exposures, abs=0.005)

    before = stats_counter(runtime)
    squares = [key for key in before if key[5] == "exposure" and key[-1] is not None]
    assert len(squares) == 6  # two exposure hours per arm, the squares of each kept
    with runtime.unit_of_work() as session:
        rebuild_stats(session)
    assert stats_counter(runtime) == before
    runtime.refresher.tick()
    again = client.get(f"/v1/experiments/{report['experiment']['key']}/report", headers=admin)
    for row in again.json()["arms"]:
        assert row["maturity"] == pytest.approx(rows[row["arm_id"]]["maturity"], abs=1e-9)
