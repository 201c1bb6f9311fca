"""The policy in the service: guardrails that act, segments, the report."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.core.runtime import Runtime
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many, later


def _events(decisions, every: dict[int, int], kind: str, prefix: str) -> list[dict]:
    """One `kind` event for every n-th decision of each arm (arm id -> n)."""
    seen: dict[int, int] = {}
    out = []
    for d in decisions:
        arm = d["arm"]["id"]
        seen[arm] = seen.get(arm, 0) + 1
        if seen[arm] % every[arm] == 0:
            out.append(
                {"event_id": f"{prefix}{len(out)}", "decision_id": d["decision_id"], "type": kind}
            )
    return out


def test_guardrail_breach_suspends_within_one_refresh_and_restore_sticks(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=3, min_exposures=200, min_successes=1)
    arms = [a["id"] for a in exp["arms"]]
    trap = arms[1]
    decisions = decide_many(client, decide, runtime, exp["key"], 3000)
    unsubs = _events(decisions, {arms[0]: 100, trap: 8, arms[2]: 100}, "unsubscribe", "u")
    clicks = _events(decisions, {arms[0]: 40, trap: 10, arms[2]: 40}, "click", "c")
    assert client.post("/v1/events", json=unsubs + clicks, headers=ingest).status_code == 200

    runtime.refresher.tick(now=later())
    experiment = client.get(f"/v1/experiments/{exp['key']}", headers=admin).json()
    status = {a["id"]: a["status"] for a in experiment["arms"]}
    assert status[trap] == "suspended"
    assert status[arms[0]] == status[arms[2]] == "live"
    history = client.get(f"/v1/experiments/{exp['key']}/arms/{trap}/history", headers=admin)
    assert history.json()[-1]["actor"] == "guardrail"
    assert "unsubscribe" in history.json()[-1]["reason"]

    report = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin).json()
    row = next(r for r in report["arms"] if r["arm_id"] == trap)
    assert row["allocation"] == 0.0
    assert row["guardrails"]["unsubscribe"]["breached"] is True
    assert row["guardrails"]["unsubscribe"]["probability_exceeds"] > 0.99
    served = decide_many(client, decide, runtime, exp["key"], 300)
    assert trap not in {d["arm"]["id"] for d in served}

    restored = client.post(
        f"/v1/experiments/{exp['key']}/arms/{trap}/restore",
        json={"reason": "copy reviewed: the unsubscribe spike was a list-hygiene issue"},
        headers=admin,
    )
    assert restored.status_code == 200, restored.text
    runtime.refresher.tick(now=later())
    runtime.refresher.tick(now=later())
    experiment = client.get(f"/v1/experiments/{exp['key']}", headers=admin).json()
    assert {a["id"]: a["status"] for a in experiment["arms"]}[trap] == "live"


def test_a_segment_is_served_from_its_own_allocation(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(
        client,
        admin,
        arms=2,
        segment_attribute="tier",
        min_exposures=100,
        min_successes=1,
        exploration_share=0.05,
    )
    a, b = (arm["id"] for arm in exp["arms"])

    def batch(tier: str, n: int) -> list[dict]:
        response = client.post(
            "/v1/choose/batch",
            json={
                "experiment": exp["key"],
                "units": [{"context": {"tier": tier}} for _ in range(n)],
            },
            headers=decide,
        )
        runtime.decision_log.flush()
        return response.json()["decisions"]

    gold, silver = batch("gold", 2000), batch("silver", 2000)
    events = _events(gold, {a: 5, b: 50}, "click", "g") + _events(
        silver, {a: 50, b: 5}, "click", "s"
    )
    assert client.post("/v1/events", json=events, headers=ingest).status_code == 200
    runtime.refresher.tick(now=later())
    gold_again, silver_again = batch("gold", 1000), batch("silver", 1000)
    share_a_gold = sum(d["arm"]["id"] == a for d in gold_again) / 1000
    share_b_silver = sum(d["arm"]["id"] == b for d in silver_again) / 1000
    assert share_a_gold > 0.85
    assert share_b_silver > 0.85
    report = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin).json()
    assert set(report["segments"]) == {"gold", "silver"}
    gold_rows = {r["arm_id"]: r for r in report["segments"]["gold"]}
    assert gold_rows[a]["probability_best"] > 0.99
    # the propensity returned is the segment's own allocation
    assert (
        abs(gold_again[0]["propensity"] - gold_rows[gold_again[0]["arm"]["id"]]["allocation"])
        < 1e-12
    )


def test_report_figures_agree_with_statistics_and_show_lift(
    client: TestClient, admin, decide, ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2, min_exposures=100, min_successes=1)
    control, challenger = (arm["id"] for arm in exp["arms"])
    decisions = decide_many(client, decide, runtime, exp["key"], 2000)
    clicks = _events(decisions, {control: 50, challenger: 10}, "click", "c")
    client.post("/v1/events", json=clicks, headers=ingest)
    runtime.refresher.tick(now=later())
    report = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin).json()
    rows = {r["arm_id"]: r for r in report["arms"]}
    by_arm = {arm: sum(d["arm"]["id"] == arm for d in decisions) for arm in (control, challenger)}
    assert rows[control]["exposures"] == by_arm[control]
    assert rows[challenger]["exposures"] == by_arm[challenger]
    assert rows[challenger]["successes"] == by_arm[challenger] // 10
    assert abs(sum(r["allocation"] for r in report["arms"]) - 1) < 1e-9
    lift = report["lift_over_control"]
    assert lift["leader_arm_id"] == challenger
    assert lift["control_arm_id"] == control
    assert lift["relative"]["ci_low"] > 1.0  # 10% vs 2%: a lift of about +400%
    assert lift["relative"]["ci_low"] < lift["relative"]["value"] < lift["relative"]["ci_high"]
    history = client.get(f"/v1/experiments/{exp['key']}/history", headers=admin).json()
    assert history["points"][-1]["version"] == report["policy_version"]
