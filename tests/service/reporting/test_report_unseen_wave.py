"""A first send whose clicks all came within 2 s, read 5 s later, through the real app: the
data cannot tell a push send from an email send whose slow wave has not begun
(``bandits.delay_unseen``). The estimates stay on the observed rates; the maturity's low end,
the intervals' upper ends and the label say that more may be coming. Before: maturity 1.00
(1.00 to 1.00) and "judged"."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from bandits.delay_model import JUDGED, TOO_EARLY
from service.core.clock import ManualClock
from service.core.runtime import Runtime
from service.experiments import repository as experiments_repo
from service.loop.gather import gather
from tests.service.factories import create_random_experiment
from tests.service.reporting.test_report_delay import DAY, fast_clicks, keyed_send

RATES = (0.02, 0.06, 0.12)  # as fast_clicks's every 50th, 17th and 8th decision


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DAY)


def _post_and_read(
    client: TestClient,
    headers: tuple[dict[str, str], dict[str, str]],
    events: list,
    key: str,
    runtime: Runtime,
) -> dict:
    """Post ``events``, refresh, and read the report (``headers``: ingest, admin)."""
    response = client.post("/v1/events", json=events, headers=headers[0])
    assert response.status_code == 200, response.text
    runtime.refresher.tick()
    report = client.get(f"/v1/experiments/{key}/report", headers=headers[1])
    assert report.status_code == 200, report.text
    return dict(report.json())


def _loop_judges(runtime: Runtime, key: str, clock: ManualClock) -> list[bool]:
    """Whether the loop, gathering its input now, would learn from each arm."""
    with Session(runtime.engine) as session:
        experiment = experiments_repo.get_by_key(session, key=key)
        assert experiment is not None
        loop_input = gather(
            session, experiment, now=clock.now(), learnings_cap=10, max_new_variants=2
        )
    return [loop_input.has_enough_evidence(arm) for arm in loop_input.arms]


def test_two_second_clicks_read_at_five_seconds_are_too_early_to_judge(
    client: TestClient, admin, decide, ingest, runtime: Runtime, clock: ManualClock
):
    sent = DAY.replace(hour=9, minute=12)
    clock.set(sent)
    exp = create_random_experiment(client, admin, arms=3)  # default settings
    arm_ids = [a["id"] for a in exp["arms"]]
    decisions = keyed_send(client, decide, runtime, exp["key"], 3000)
    events = fast_clicks(decisions, arm_ids, sent, seconds=(0.2, 2.0))
    clock.set(sent + timedelta(seconds=5))
    report = _post_and_read(client, (ingest, admin), events, exp["key"], runtime)
    for row in report["arms"]:
        observed = row["observed_rate"]
        assert observed / 2 <= row["estimated_rate"] <= observed * 2, row
        assert row["estimate_low"] <= observed < 2 * observed <= row["estimate_high"], row
        assert row["maturity"] > 0.9, row
        assert row["maturity_low"] < 0.5, row
        assert row["judgement"] == TOO_EARLY, row
    assert "too young to rule out a slower wave of clicks" in report["correction"]
    # The evaluation allows for the same wave: its upper ends reach what the arms' do.
    evaluation = report["evaluation"]
    assert evaluation["delay"]["unseen_wave_share"] < 0.5
    pooled = sum(a["successes"] for a in report["arms"]) / sum(
        a["exposures"] for a in report["arms"]
    )
    policy = evaluation["lift"]["policy"]
    assert policy["ci_low"] <= pooled < 2 * pooled <= policy["ci_high"], policy
    # The loop reads the same label: it learns nothing from these arms yet.
    assert _loop_judges(runtime, exp["key"], clock) == [False, False, False]

    # Three days on, with an hourly send since whose clicks also came within seconds: a slow
    # wave would have shown in the old sends, so the figures are confident again.
    rng = np.random.default_rng(2)
    clicks: list[dict[str, str]] = []
    for hour in range(1, 73):
        at = sent + timedelta(hours=hour)
        clock.set(at)
        batch = keyed_send(client, decide, runtime, exp["key"], 300, send_id=f"h{hour}")
        clicks += [
            {
                "event_id": f"h{hour}-{i}",
                "decision_id": d["decision_id"],
                "type": "click",
                "occurred_at": (at + timedelta(seconds=float(rng.uniform(0.2, 2.0)))).isoformat(),
            }
            for i, d in enumerate(batch)
            if rng.random() < RATES[arm_ids.index(d["arm"]["id"])]
        ]
    clock.set(at + timedelta(seconds=5))
    report = _post_and_read(client, (ingest, admin), clicks, exp["key"], runtime)
    for row in report["arms"]:
        observed = row["observed_rate"]
        assert row["maturity_low"] > 0.9, row
        assert row["estimate_low"] <= observed <= row["estimate_high"], row
        assert row["estimate_high"] < observed + 4 * np.sqrt(observed / row["exposures"]), row
        assert row["judgement"] == JUDGED, row
    assert "slower wave" not in report["correction"]
    assert report["evaluation"]["delay"]["unseen_wave_share"] is None
    assert _loop_judges(runtime, exp["key"], clock) == [True, True, True]
