"""Honest numbers in the first minutes of a send: the delay model seen through the app.

The runtime runs on a ``ManualClock`` (the ``clock`` fixture below), so a send can be placed
at any minute of the hour without sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.core.clock import ManualClock
from service.core.runtime import Runtime
from service.measuring import stats_repository as stats_repo
from service.policy.refresher import _moved
from service.policy.snapshot import SegmentFigures
from tests.service.factories import create_random_experiment
from tests.service.helpers import later

EVERY = (50, 17, 8)  # one click per n-th decision of each arm: 2%, 5.9%, 12.5%
DAY = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DAY)


def keyed_send(
    client: TestClient,
    decide: dict[str, str],
    runtime: Runtime,
    key: str,
    n: int,
    send_id: str = "launch",
):
    response = client.post(
        "/v1/choose/batch",
        json={
            "experiment": key,
            "units": [{"unit_id": f"u{i}", "send_id": send_id} for i in range(n)],
        },
        headers=decide,
    )
    assert response.status_code == 200, response.text
    runtime.decision_log.flush()
    return response.json()["decisions"]


def fast_clicks(
    decisions: list[dict[str, Any]],
    arm_ids: list[int],
    sent: datetime,
    *,
    seconds: tuple[float, float] = (5, 55),
    rng: np.random.Generator | None = None,
    prefix: str = "click",
    every: tuple[int, ...] = EVERY,
):
    """Clicks for every n-th decision of each arm (``every``), 5 to 55 seconds (``seconds``)
    after the send."""
    rng = rng or np.random.default_rng(7)
    seen = dict.fromkeys(arm_ids, 0)
    events = []
    for d in decisions:
        arm = d["arm"]["id"]
        seen[arm] += 1
        if seen[arm] % every[arm_ids.index(arm)] == 0:
            delay = timedelta(seconds=float(rng.uniform(*seconds)))
            events.append(
                {
                    "event_id": f"{prefix}-{len(events)}",
                    "decision_id": d["decision_id"],
                    "type": "click",
                    "occurred_at": (sent + delay).isoformat(),
                }
            )
    return events


def read_fresh_send(
    client: TestClient,
    admin: dict[str, str],
    decide: dict[str, str],
    ingest: dict[str, str],
    runtime: Runtime,
    clock: ManualClock,
    *,
    sent: datetime,
    read_after: timedelta,
) -> dict[str, Any]:
    clock.set(sent)
    exp = create_random_experiment(client, admin, arms=3)  # default settings
    arm_ids = [a["id"] for a in exp["arms"]]
    decisions = keyed_send(client, decide, runtime, exp["key"], 3000)
    clock.advance(read_after.total_seconds() / 3600.0)
    events = fast_clicks(decisions, arm_ids, sent)
    response = client.post("/v1/events", json=events, headers=ingest)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(events)
    runtime.refresher.tick()
    report = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin)
    assert report.status_code == 200, report.text
    body: dict[str, Any] = report.json()
    body["arm_order"] = arm_ids
    return body


def test_a_fresh_push_send_reads_as_what_was_observed(
    client: TestClient, admin, decide, ingest, runtime: Runtime, clock: ManualClock
):
    """Clicks all back within a minute, read four minutes after the send: the corrected
    estimate stays within a factor of two of the observed rate and its interval covers it,
    at 3, 31 and 56 minutes past the hour alike (the last read crosses into the next hour)."""
    pictures = []
    for minute in (3, 31, 56):
        report = read_fresh_send(
            client,
            admin,
            decide,
            ingest,
            runtime,
            clock,
            sent=DAY.replace(hour=10, minute=minute),
            read_after=timedelta(minutes=4),
        )
        rows = {r["arm_id"]: r for r in report["arms"]}
        picture = []
        for arm_id in report["arm_order"]:
            row = rows[arm_id]
            observed, estimate = row["observed_rate"], row["estimated_rate"]
            assert observed > 0
            assert observed / 2 <= estimate <= observed * 2, row
            assert row["estimate_low"] <= observed <= row["estimate_high"], row
            assert row["maturity"] > 0.95, row
            # A first send four minutes old cannot rule out a slow wave that has not begun
            # (``bandits.delay_unseen``): the central maturity stays, its low end does not, and
            # the label follows the low end.
            assert row["maturity_low"] < 0.5 <= row["maturity"], row
            assert row["judgement"] == "too early to judge"
            # The old names are aliases of the new ones.
            assert row["rate"] == observed
            assert (row["posterior_mean"], row["ci_low"], row["ci_high"]) == (
                estimate,
                row["estimate_low"],
                row["estimate_high"],
            )
            picture.append((observed, estimate, row["maturity"]))
        assert report["correction"].startswith("Delay correction: a click arrives a median")
        assert report["delay"]["median_hours"] < 60 / 3600
        pictures.append(np.array(picture))
    # The same picture whatever the minute of the hour: the old model counted the current
    # hour's decisions as no exposure in its first half.
    for other in pictures[1:]:
        np.testing.assert_allclose(other[:, 1], pictures[0][:, 1], rtol=0.15)
        np.testing.assert_allclose(other[:, 2], pictures[0][:, 2], atol=0.03)


def test_the_report_says_when_it_is_too_early_to_judge(
    client: TestClient, admin, decide, ingest, runtime: Runtime, clock: ManualClock
):
    """Thirty seconds after the send, with clicks still arriving: labelled immature."""
    report = read_fresh_send(
        client,
        admin,
        decide,
        ingest,
        runtime,
        clock,
        sent=DAY.replace(hour=14, minute=0),
        read_after=timedelta(seconds=20),
    )
    for row in report["arms"]:
        assert row["observed_rate"] <= row["estimated_rate"] or row["observed_rate"] == 0
        assert row["estimate_low"] <= row["estimate_high"]
    assert all(r["judgement"] == "too early to judge" for r in report["arms"])
    assert report["lift_over_control"]["summary"].startswith("Too early to compare")


def test_report_and_history_are_described_in_openapi(client: TestClient):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    report = paths["/v1/experiments/{key}/report"]["get"]["responses"]["200"]
    history = paths["/v1/experiments/{key}/history"]["get"]["responses"]["200"]
    assert report["content"]["application/json"]["schema"]["$ref"].endswith("/ReportOut")
    assert history["content"]["application/json"]["schema"]["$ref"].endswith("/HistoryOut")
    row = schema["components"]["schemas"]["ArmReportRow"]["properties"]
    for name in ("observed_rate", "estimated_rate", "estimate_low", "estimate_high", "maturity"):
        assert name in row


def test_history_carries_observed_rates_and_the_arms_text(
    client: TestClient, admin, decide, ingest, runtime: Runtime, clock: ManualClock
):
    report = read_fresh_send(
        client,
        admin,
        decide,
        ingest,
        runtime,
        clock,
        sent=DAY.replace(hour=9, minute=10),
        read_after=timedelta(minutes=5),
    )
    key = report["experiment"]["key"]
    history = client.get(f"/v1/experiments/{key}/history", headers=admin).json()
    last = history["points"][-1]
    assert [a["id"] for a in last["arms"]] == last["arm_ids"]
    assert all(a["content"].startswith("Subject line") for a in last["arms"])
    rows = {r["arm_id"]: r for r in report["arms"]}
    observed = [rows[i]["observed_rate"] for i in last["arm_ids"]]
    assert last["observed_rate"] == pytest.approx(observed, abs=1e-6)
    assert last["maturity"] == [rows[i]["maturity"] for i in last["arm_ids"]]


def test_lift_names_the_control_as_leader_and_compares_the_best_challenger(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=3, min_exposures=100, min_successes=1)
    control, second, third = (a["id"] for a in exp["arms"])
    decisions = keyed_send(client, decide, runtime, exp["key"], 3000)
    every = {control: 8, second: 25, third: 50}
    seen = dict.fromkeys(every, 0)
    clicks = []
    for d in decisions:
        arm = d["arm"]["id"]
        seen[arm] += 1
        if seen[arm] % every[arm] == 0:
            clicks.append(
                {"event_id": f"c{len(clicks)}", "decision_id": d["decision_id"], "type": "click"}
            )
    assert client.post("/v1/events", json=clicks, headers=ingest).status_code == 200
    runtime.refresher.tick(now=later())
    lift = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin).json()[
        "lift_over_control"
    ]
    assert lift["control_leads"] is True
    assert lift["leader_arm_id"] == lift["control_arm_id"] == control
    assert lift["challenger_arm_id"] == second  # the best of the others, not the control itself
    assert lift["relative"]["ci_high"] < 0  # 4% against 12.5%
    assert lift["probability_leader_beats_control"] < 0.01
    assert lift["summary"].startswith("The control leads")


def test_snapshots_follow_the_cohorts_age_and_idle_ones_cost_nothing(
    client: TestClient,
    admin,
    decide,
    ingest,
    runtime: Runtime,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
):
    sent = DAY.replace(hour=16)
    clock.set(sent)
    computed = []
    real_delays = stats_repo.success_delays

    def counting(*args: Any, **kwargs: Any) -> Any:
        computed.append(kwargs.get("now"))
        return real_delays(*args, **kwargs)

    monkeypatch.setattr(stats_repo, "success_delays", counting)
    exp = create_random_experiment(client, admin, arms=2)
    key = exp["key"]
    decisions = keyed_send(client, decide, runtime, key, 2000)
    rng = np.random.default_rng(4)
    clicks = []
    for d in decisions[::10]:  # email-like: log-normal delays, median an hour
        at = sent + timedelta(hours=float(rng.lognormal(0.0, 1.2)))
        clicks.append(
            {
                "event_id": f"c{len(clicks)}",
                "decision_id": d["decision_id"],
                "type": "click",
                "occurred_at": at.isoformat(),
            }
        )
    posted: set[str] = set()

    def tick() -> dict[str, Any]:
        due = [
            c
            for c in clicks
            if datetime.fromisoformat(c["occurred_at"]) <= clock.now()
            and c["event_id"] not in posted
        ]
        if due:
            assert client.post("/v1/events", json=due, headers=ingest).status_code == 200
            posted.update(c["event_id"] for c in due)
        runtime.refresher.tick()
        report: dict[str, Any] = client.get(f"/v1/experiments/{key}/report", headers=admin).json()
        return report

    clock.advance(0.25)
    first = tick()
    maturity = first["arms"][0]["maturity"]
    assert maturity < 0.5
    # The cohort ages (and the clicks due by then arrive): a higher maturity.
    clock.advance(1.0)
    aged = tick()
    assert aged["policy_version"] > first["policy_version"]
    assert aged["arms"][0]["maturity"] > maturity
    # With no new event at all, ageing alone moves the corrections: a new version.
    clicks = [c for c in clicks if c["event_id"] in posted]
    clock.advance(2.0)
    still = tick()
    assert still["policy_version"] > aged["policy_version"]
    assert still["arms"][0]["maturity"] > aged["arms"][0]["maturity"]
    # Past the window every correction is final; then idle ticks compute nothing.
    clock.advance(8 * 24)
    final = tick()
    assert final["arms"][0]["maturity"] == 1.0
    before = len(computed)
    for _ in range(3):
        clock.advance(1 / 60)
        idle = tick()
    assert len(computed) == before
    assert idle["policy_version"] == final["policy_version"]
    # New evidence (a second send) is computed at once.
    keyed_send(client, decide, runtime, key, 100, send_id="second")
    fresh = tick()
    assert len(computed) == before + 1
    assert fresh["policy_version"] > final["policy_version"]


def test_a_mixed_send_read_six_hours_in_reports_a_wider_honest_interval(
    client: TestClient, admin, decide, ingest, runtime: Runtime, clock: ManualClock
):
    """Half the clicks within ten minutes, half over hours (one in eight decisions clicks in
    the end), read six hours in. The fit to every delay underweights the slow half; two
    log-normals beat one by BIC, so the report's interval allows for the slow part and covers
    the final rate, and the correction line says the delays are a mix. The posterior mean
    (what the policy uses) is left where the whole fit puts it."""
    sent = DAY.replace(hour=9)
    clock.set(sent)
    exp = create_random_experiment(client, admin, arms=2)
    decisions = keyed_send(client, decide, runtime, exp["key"], 4000)
    rng = np.random.default_rng(12)
    events = []
    for d in decisions[::8]:
        fast = rng.random() < 0.5
        hours = rng.lognormal(np.log(10 / 60), 1.0) if fast else rng.lognormal(np.log(6.0), 1.0)
        if hours <= 6.0:
            events.append(
                {
                    "event_id": f"m{len(events)}",
                    "decision_id": d["decision_id"],
                    "type": "click",
                    "occurred_at": (sent + timedelta(hours=float(hours))).isoformat(),
                }
            )
    clock.advance(6.0)
    assert client.post("/v1/events", json=events, headers=ingest).status_code == 200
    runtime.refresher.tick()
    report = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin).json()
    assert report["delay"]["mixed"] is True
    assert report["delay"]["mixture"]["bic_difference"] > 0
    assert "the interval allows for more of the slow part still to come." in report["correction"]
    final = 1 / 8  # every eighth decision clicks within the window
    for row in report["arms"]:
        assert row["estimate_low"] <= final <= row["estimate_high"], row
        assert row["estimated_rate"] < final  # the whole fit's (biased) centre, unchanged
        assert row["maturity_low"] < row["maturity"] <= row["maturity_high"], row


def two_arms(
    *,
    maturity: float = 0.5,
    mean: float = 0.05,
    interval: tuple[float, float] = (0.02, 0.1),
    policy: tuple[float, float] | None = None,
) -> SegmentFigures:
    """Two arms' figures; the first arm's corrected rate is ``mean``, its reported interval
    ``interval`` and its policy's own ``policy`` (None: not stored, as before)."""
    two = (0.5, 0.5)
    return SegmentFigures(
        exposures=(100.0, 100.0),
        successes=(5.0, 6.0),
        effective_exposures=(100.0, 100.0),
        effective_successes=(5.0, 6.0),
        allocation=two,
        exploit=two,
        eligible=(False, False),
        exploration_share=0.1,
        probability_best=two,
        expected_loss=(0.01, 0.01),
        posterior_mean=(mean, 0.06),
        ci_low=(interval[0], 0.03),
        ci_high=(interval[1], 0.11),
        warming_up=(False, False),
        maturity=(maturity, maturity),
        policy_ci_low=None if policy is None else (policy[0], 0.05),
        policy_ci_high=None if policy is None else (policy[1], 0.07),
    )


def test_reaching_full_maturity_is_always_a_new_version():
    """Past the window no further refresh is due, so the step to maturity 1 must publish even
    when it is smaller than the usual hundredth (a slow tail left the report at 0.9925)."""

    def figures(maturity: float) -> SegmentFigures:
        return two_arms(maturity=maturity)

    assert _moved(figures(0.9925), figures(1.0))
    assert not _moved(figures(0.99), figures(0.9925))
    assert not _moved(figures(1.0), figures(1.0))


def test_read_seconds_after_the_clicks_the_page_states_one_maturity(
    client: TestClient, admin, decide, ingest, runtime: Runtime, clock: ManualClock
):
    """Three push sends ten seconds apart, clicks back 1-3 s after each, the policy refreshed
    4 s after each and the report read 2 s after the last refresh. The evaluation reads the log
    as the arms' snapshot did: its maturity is the arms' (exposure-weighted), the policy's
    corrected value is the arms' evidence pooled, and the lift over an even split is clearly
    positive (the later sends favoured the best arm). Before, the evaluation discounted each
    decision by F at its age at read time, with F a straight line below 10 s: a different
    maturity on the same page, and rates capped at 100% that made the lift read +0.0%."""
    start = DAY.replace(hour=11, minute=20)
    clock.set(start)
    exp = create_random_experiment(client, admin, arms=3)  # default settings
    arm_ids = [a["id"] for a in exp["arms"]]
    rng = np.random.default_rng(11)
    for send in range(3):
        sent = start + timedelta(seconds=10 * send)
        clock.set(sent)
        decisions = keyed_send(client, decide, runtime, exp["key"], 1500, send_id=f"s{send}")
        events = fast_clicks(
            decisions, arm_ids, sent, seconds=(1, 3), rng=rng, prefix=f"click-{send}"
        )
        clock.set(sent + timedelta(seconds=4))
        response = client.post("/v1/events", json=events, headers=ingest)
        assert response.status_code == 200, response.text
        runtime.refresher.tick()
    clock.advance(2 / 3600)
    report = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin).json()

    rows = report["arms"]
    exposures = np.array([r["exposures"] for r in rows], dtype=float)
    successes = np.array([r["successes"] for r in rows], dtype=float)
    maturity = np.array([r["maturity"] for r in rows])
    arms_maturity = float((maturity * exposures).sum() / exposures.sum())
    evaluation = report["evaluation"]
    assert evaluation["as_of"] == report["computed_at"]
    assert evaluation["young"] == evaluation["n"] == 4500
    assert evaluation["maturity"] == pytest.approx(arms_maturity, abs=0.005)
    # The policy's value is the arms' corrected evidence pooled.
    pooled = successes.sum() / (maturity * exposures).sum()
    lift = evaluation["lift"]
    assert lift["policy"]["value"] == pytest.approx(pooled, rel=0.01)
    assert lift["policy"]["value"] < 0.5  # not capped at 100%
    # The arms differ clearly, and the later sends followed them.
    for row in rows:
        observed = row["observed_rate"]
        assert observed / 2 <= row["estimated_rate"] <= observed * 2, row
    assert lift["relative"]["value"] > 0.2, lift
    assert lift["relative"]["ci_low"] > 0.0, lift


def test_ageing_publishes_by_the_policys_own_interval_not_the_reported_one():
    """A slow tail widens the reported interval (here to 0..40%); a move of a corrected rate
    by a quarter of a point is small against that, but a quarter of the policy's own interval
    (4%..6%): the rates the allocation rests on moved, so a version is published."""

    def figures(mean: float, policy: bool = True) -> SegmentFigures:
        own = (mean - 0.01, mean + 0.01) if policy else None
        return two_arms(mean=mean, interval=(0.0, 0.4), policy=own)

    assert _moved(figures(0.05), figures(0.0525))
    assert not _moved(figures(0.05), figures(0.0505))
    # Snapshots written before the policy's interval was kept: the reported one stands in.
    assert not _moved(figures(0.05, policy=False), figures(0.0525, policy=False))
    low, high = SegmentFigures.from_json(figures(0.05).to_json()).policy_interval()
    assert low == pytest.approx((0.04, 0.05))
    assert high == pytest.approx((0.06, 0.07))


def test_an_email_send_read_in_its_first_hours_is_floored_by_what_was_seen(
    client: TestClient, admin, decide, ingest, runtime: Runtime, clock: ManualClock
):
    """One log-normal email send (median 1 h) at 2%, 6% and 12%, read at 30 min, 1 h and 3 h:
    no lower end reaches below the observed rate's own interval (successes only accumulate),
    the delays are not called mixed, and from an hour on every interval covers the rate the
    send ends with."""
    from scipy import stats

    sent = DAY.replace(hour=10, minute=3)
    clock.set(sent)
    exp = create_random_experiment(client, admin, arms=3)
    arm_ids = [a["id"] for a in exp["arms"]]
    decisions = keyed_send(client, decide, runtime, exp["key"], 3000)
    rng = np.random.default_rng(3)
    clicks = [
        (float(np.exp(rng.normal(0.0, 1.2))), d["decision_id"], d["arm"]["id"])
        for d in decisions
        if rng.random() < (0.02, 0.06, 0.12)[arm_ids.index(d["arm"]["id"])]
    ]
    exposures = {a: sum(d["arm"]["id"] == a for d in decisions) for a in arm_ids}
    final = {a: sum(c[2] == a for c in clicks if c[0] <= 168) / exposures[a] for a in arm_ids}
    posted = 0.0
    for read_hours in (0.5, 1.0, 3.0):
        clock.set(sent + timedelta(hours=read_hours))
        events = [
            {
                "event_id": f"c-{i}",
                "decision_id": decision_id,
                "type": "click",
                "occurred_at": (sent + timedelta(hours=delay)).isoformat(),
            }
            for i, (delay, decision_id, _arm) in enumerate(clicks)
            if posted < delay <= read_hours
        ]
        posted = read_hours
        assert client.post("/v1/events", json=events, headers=ingest).status_code == 200
        runtime.refresher.tick()
        report = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin).json()
        assert report["delay"]["mixed"] is False, read_hours
        for row in report["arms"]:
            s, n = row["successes"], row["exposures"]
            floor = float(stats.beta.ppf(0.025, s + 0.5, n - s + 0.5)) if s else 0.0
            assert row["estimate_low"] >= min(floor, row["estimated_rate"]) - 1e-9, row
            assert row["estimate_low"] <= row["estimated_rate"] <= row["estimate_high"], row
            if read_hours >= 1.0:
                assert row["estimate_low"] <= final[row["arm_id"]] <= row["estimate_high"], row


def test_before_any_decision_the_lift_says_there_is_nothing_to_compare(
    client: TestClient, admin, runtime: Runtime, clock: ManualClock
):
    """No decision yet: every arm reads as fully 'arrived' (nothing is due), so the summary
    must not quote a lift of the prior against itself."""
    exp = create_random_experiment(client, admin, arms=3)
    runtime.refresher.tick(now=later())
    lift = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin).json()[
        "lift_over_control"
    ]
    assert lift["summary"].startswith("Nothing to compare yet: no decision has gone to arm")
    assert "%" not in lift["summary"]


def test_the_correction_line_reads_as_a_sentence_after_one_click(
    client: TestClient, admin, decide, ingest, runtime: Runtime, clock: ManualClock
):
    exp = create_random_experiment(client, admin, arms=2)
    decisions = keyed_send(client, decide, runtime, exp["key"], 40)
    clock.advance(seconds=1200)
    click = {"event_id": "c0", "decision_id": decisions[0]["decision_id"], "type": "click"}
    assert client.post("/v1/events", json=[click], headers=ingest).status_code == 200
    clock.advance(seconds=300)
    runtime.refresher.tick(now=clock.now())
    line = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin).json()["correction"]
    assert "(learnt from 1 click)" in line
    # One arm has been clicked: one factor, not "2.16x to 2.16x".
    factor = line.split("estimated rates are ")[1].split(" the observed")[0]
    assert " to " not in factor
    assert factor.endswith("x")
