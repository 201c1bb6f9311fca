"""Evaluation from logs written to the real database (SQLite and PostgreSQL): lift over an even
split and off-policy estimates recover the values the synthetic log was built with."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert
from sqlmodel import Session

from service.core.cli import main as cli_main
from service.core.errors import NotFound
from service.core.runtime import Runtime
from service.core.vocabulary import OVERALL
from service.models import Decision, FirstEvent, utcnow
from service.policy import repository as snapshots_repo
from service.policy.refresher import publish
from service.reporting.evaluation import evaluate_experiment
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many

RATES = (0.05, 0.10, 0.20)


@dataclass(frozen=True)
class Phase:
    """One snapshot version: its allocation over the experiment's arms (0 = not eligible)."""

    allocation: Sequence[float]
    decisions: int


def write_log(
    runtime: Runtime,
    *,
    experiment_id: int,
    phases: Sequence[Phase],
    rates: Sequence[float],
    rng: np.random.Generator,
    age: timedelta = timedelta(days=10),
) -> list[int]:
    """Snapshot versions with the given allocations, and decisions drawn from each.

    Each decision's arm is drawn from its version's allocation (the logged propensity is
    exact) and succeeds with the arm's true rate; the first success lands an hour later.
    """
    versions = []
    start = utcnow() - age
    serial = 0
    with runtime.unit_of_work() as session:
        base = snapshots_repo.latest(session, experiment_id=experiment_id)
        assert base is not None
        arm_ids = list(base.payload["arm_ids"])
        for phase in phases:
            payload: dict[str, Any] = copy.deepcopy(base.payload)
            overall = payload["segments"][OVERALL]
            overall["allocation"] = list(phase.allocation)
            overall["exploit"] = list(phase.allocation)
            overall["eligible"] = [x > 0 for x in phase.allocation]
            snapshot = snapshots_repo.insert_next(
                session, experiment_id=experiment_id, epoch=1, payload=payload
            )
            versions.append(snapshot.version)
            allocation = np.asarray(phase.allocation)
            picks = rng.choice(len(arm_ids), size=phase.decisions, p=allocation)
            wins = rng.random(phase.decisions) < np.asarray(rates)[picks]
            decisions, firsts = [], []
            for arm, win in zip(picks.tolist(), wins.tolist(), strict=True):
                serial += 1
                created = start + timedelta(seconds=serial)
                decision_id = f"synthetic-{experiment_id}-{snapshot.version}-{serial}"
                decisions.append(
                    {
                        "id": decision_id,
                        "experiment_id": experiment_id,
                        "epoch": 1,
                        "arm_id": arm_ids[arm],
                        "segment": "",
                        "propensity": float(allocation[arm]),
                        "explored": False,
                        "policy_version": snapshot.version,
                        "created_at": created,
                    }
                )
                if win:
                    firsts.append(
                        {
                            "decision_id": decision_id,
                            "metric": "click",
                            "occurred_at": created + timedelta(hours=1),
                        }
                    )
            if decisions:
                session.execute(insert(Decision), decisions)
            if firsts:
                session.execute(insert(FirstEvent), firsts)
    return versions


def evaluate(runtime: Runtime, experiment_id: int, **kwargs: Any) -> dict[str, Any]:
    with Session(runtime.engine) as session:
        return evaluate_experiment(
            session, experiment_id=experiment_id, rng=np.random.default_rng(3), **kwargs
        )


def inside(figure: dict[str, Any], truth: float) -> bool:
    return figure["ci_low"] <= truth <= figure["ci_high"]


PHASES = (
    Phase((0.6, 0.3, 0.1), 2000),
    Phase((0.2, 0.3, 0.5), 2000),
    Phase((0.1, 0.1, 0.8), 2000),
)


def test_estimates_recover_the_values_the_log_was_built_with(
    client: TestClient, admin: dict[str, str], runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=3)
    arm_ids = [a["id"] for a in exp["arms"]]
    versions = write_log(
        runtime,
        experiment_id=exp["id"],
        phases=PHASES,
        rates=RATES,
        rng=np.random.default_rng(11),
    )
    result = evaluate(runtime, exp["id"], arm_id=arm_ids[2])

    assert result["n"] == result["matured"] == 6000
    assert result["pending"] == 0
    assert result["level"] == 0.95
    uniform = float(np.mean(RATES))
    current = float(np.dot(PHASES[-1].allocation, RATES))
    policy = float(np.mean([np.dot(p.allocation, RATES) for p in PHASES]))
    figures = result["off_policy"]
    for estimator in ("ips", "snips"):
        assert inside(figures["uniform"][estimator], uniform)
        assert inside(figures["current"][estimator], current)
        assert inside(figures["arm"][estimator], RATES[2])
    assert figures["current"]["version"] == versions[-1]
    assert figures["arm"]["arm_id"] == arm_ids[2]
    assert figures["arm"]["coverage"] == 1.0
    lift = result["lift"]
    assert lift["support"]
    assert inside(lift["uniform"], uniform)
    assert inside(lift["policy"], policy)
    assert inside(lift["difference"], policy - uniform)
    assert lift["successes_gained"]["value"] == pytest.approx(6000 * lift["difference"]["value"])
    assert lift["difference"]["ci_low"] > 0  # the log favoured the best arm: a real gain


def test_young_decisions_count_through_the_delay_correction(
    client: TestClient, admin: dict[str, str], runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=3)
    rng = np.random.default_rng(5)
    write_log(runtime, experiment_id=exp["id"], phases=PHASES[:1], rates=RATES, rng=rng)
    write_log(
        runtime,
        experiment_id=exp["id"],
        phases=[Phase((0.2, 0.3, 0.5), 300)],
        rates=RATES,
        rng=rng,
        age=timedelta(days=2),
    )
    result = evaluate(runtime, exp["id"])
    assert (result["n"], result["matured"], result["pending"]) == (2300, 2000, 300)
    assert result["young"] == 300
    # 2,000 matured decisions and 300 two days old: most of the eventual evidence is in,
    # not all of it (the snapshot's F at 48 h is below 1).
    assert 0.95 <= result["maturity"] < 1.0
    assert result["delay"]["source"] in ("snapshot", "log")
    capped = evaluate(runtime, exp["id"], max_decisions=500)
    assert (capped["n"], capped["matured"], capped["capped"]) == (500, 2000, True)
    assert capped["young"] == 300


def test_no_support_where_the_log_cannot_answer(
    client: TestClient, admin: dict[str, str], runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=3)
    added = client.post(
        f"/v1/experiments/{exp['key']}/arms", json={"content": "A fourth line"}, headers=admin
    )
    assert added.status_code == 201, added.text
    late_arm = added.json()["id"]
    # The fourth arm is never eligible in the log, then the current allocation gives it a
    # share: neither it alone nor the current allocation has support.
    write_log(
        runtime,
        experiment_id=exp["id"],
        phases=[Phase((0.5, 0.3, 0.2, 0.0), 1500)],
        rates=(*RATES, 0.3),
        rng=np.random.default_rng(8),
    )
    write_log(
        runtime,
        experiment_id=exp["id"],
        phases=[Phase((0.25, 0.25, 0.25, 0.25), 0)],
        rates=(*RATES, 0.3),
        rng=np.random.default_rng(9),
    )
    result = evaluate(runtime, exp["id"], arm_id=late_arm)
    assert result["n"] == 1500
    for name in ("current", "arm"):
        figure = result["off_policy"][name]
        assert figure["support"] is False
        assert figure["n"] == 0
        assert figure["snips"] == {"value": None, "ci_low": None, "ci_high": None}
    # The even split is over the arms live at each decision, so it stays supported.
    assert result["off_policy"]["uniform"]["support"]
    assert result["off_policy"]["uniform"]["snips"]["value"] is not None
    assert result["lift"]["support"]


def test_a_fixed_arm_is_judged_where_it_was_eligible(
    client: TestClient, admin: dict[str, str], runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=3)
    arm_ids = [a["id"] for a in exp["arms"]]
    write_log(
        runtime,
        experiment_id=exp["id"],
        phases=[Phase((0.5, 0.5, 0.0), 1000), Phase((0.2, 0.2, 0.6), 3000)],
        rates=RATES,
        rng=np.random.default_rng(12),
    )
    result = evaluate(runtime, exp["id"], arm_id=arm_ids[2])
    arm = result["off_policy"]["arm"]
    assert arm["n"] == 3000
    assert arm["coverage"] == pytest.approx(0.75)
    assert inside(arm["snips"], RATES[2])
    # K changes between versions: 1/2 then 1/3, and the even split follows it.
    truth = (1000 * np.mean(RATES[:2]) + 3000 * np.mean(RATES)) / 4000
    assert inside(result["lift"]["uniform"], truth)


def test_decisions_and_events_through_the_api(
    client: TestClient, admin: dict[str, str], decide: dict[str, str], ingest, runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2)
    decisions = decide_many(client, decide, runtime, exp["key"], 400)
    clicks = [
        {"event_id": f"c{i}", "decision_id": d["decision_id"], "type": "click"}
        for i, d in enumerate(decisions)
        if i % 4 == 0
    ]
    response = client.post("/v1/events", json=clicks, headers=ingest)
    assert response.status_code == 200, response.text
    now = utcnow()
    # An hour after the send, nothing has matured, and the evaluation speaks already, with
    # the F of the snapshot the refresher writes then (it refreshes on age too).
    with runtime.unit_of_work() as session:
        publish(session, experiment_id=exp["id"], now=now + timedelta(hours=1))
    young = evaluate(runtime, exp["id"], now=now + timedelta(hours=1))
    assert young["delay"]["source"] == "snapshot"
    assert (young["n"], young["matured"], young["young"]) == (400, 0, 400)
    assert young["lift"]["support"]
    policy = young["lift"]["policy"]
    # The clicks came within seconds of their decisions: an hour later they are all in.
    assert 0.5 * 0.25 <= policy["value"] <= 2.0 * 0.25
    assert policy["ci_low"] <= 0.25 <= policy["ci_high"]
    assert young["lift"]["difference"]["ci_low"] is not None
    later = evaluate(runtime, exp["id"], now=now + timedelta(days=8))
    assert later["n"] == 400
    assert later["lift"]["policy"]["value"] == pytest.approx(len(clicks) / 400)
    propensities = {d["propensity"] for d in decisions}
    assert all(0 < p <= 1 for p in propensities)
    assert later["off_policy"]["uniform"]["support"]


def test_report_embeds_the_evaluation(client: TestClient, admin: dict[str, str], runtime: Runtime):
    exp = create_random_experiment(client, admin, arms=3)
    write_log(
        runtime,
        experiment_id=exp["id"],
        phases=PHASES[:2],
        rates=RATES,
        rng=np.random.default_rng(2),
    )
    response = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin)
    assert response.status_code == 200, response.text
    evaluation = response.json()["evaluation"]
    assert evaluation["n"] == 4000
    assert set(evaluation["off_policy"]) == {"uniform", "current", "arm"}
    assert evaluation["off_policy"]["arm"] is None
    assert evaluation["lift"]["support"]


def test_unknown_experiment_or_foreign_arm(
    client: TestClient, admin: dict[str, str], runtime: Runtime
):
    exp = create_random_experiment(client, admin, arms=2)
    other = create_random_experiment(client, admin, arms=2)
    with pytest.raises(NotFound):
        evaluate(runtime, 10_000)
    with pytest.raises(NotFound):
        evaluate(runtime, exp["id"], arm_id=other["arms"][0]["id"])


def test_evaluate_command(client, admin, runtime: Runtime, settings, monkeypatch, capsys):
    exp = create_random_experiment(client, admin, arms=3)
    write_log(
        runtime,
        experiment_id=exp["id"],
        phases=PHASES[:1],
        rates=RATES,
        rng=np.random.default_rng(4),
    )
    monkeypatch.setenv("BANDITLOOP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BANDITLOOP_SIGNING_KEYS", settings.signing_keys)
    arm = exp["arms"][1]["id"]
    assert cli_main(["evaluate", "--experiment", exp["key"], "--arm", str(arm)]) == 0
    out = capsys.readouterr().out
    assert "lift over an even split" in out
    assert f"arm {arm}" in out
    assert "matured decisions: 2,000" in out
    assert "figures are final" in out
    assert cli_main(["evaluate", "--experiment", exp["key"], "--json"]) == 0
    assert '"lift"' in capsys.readouterr().out
    assert cli_main(["evaluate", "--experiment", "no-such-experiment"]) == 2
