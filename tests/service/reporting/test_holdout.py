"""The holdout: keyed units held out of the loop always get the control arm, with
propensity 1, never explored, flagged; unkeyed requests are never held out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.core.clock import ManualClock
from service.core.runtime import Runtime
from service.deciding.decider import Unit
from service.deciding.holdout import in_holdout
from service.models import Decision
from tests.service.factories import create_random_experiment


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 9, 7, 9, 0, tzinfo=UTC))


def test_a_holdout_unit_never_gets_a_non_control_arm(
    client: TestClient, admin, decide, runtime: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=4, holdout_share=0.3)
    control = next(arm["id"] for arm in exp["arms"] if arm["control"])
    assert exp["holdout_share"] == 0.3
    units = [Unit(f"user-{u}", f"send-{s}") for u in range(60) for s in range(5)]
    choices = runtime.decider.choose(exp["key"], units)
    signer = runtime.signer
    held = {u.unit_id for u in units if in_holdout(signer.unit_hash(u.unit_id or ""), 0.3)}
    assert 5 < len(held) < 40  # about 30% of 60 units
    served_arms = set()
    for unit, choice in zip(units, choices, strict=True):
        if unit.unit_id in held:
            assert choice.arm.id == control
            assert choice.propensity == 1.0
            assert choice.explored is False
        else:
            served_arms.add(choice.arm.id)
    assert len(served_arms) > 1  # the others are served by the policy
    with Session(runtime.engine) as session:
        rows = session.exec(select(Decision).where(Decision.experiment_id == exp["id"])).all()
    by_hash = {signer.unit_hash(u): u in held for u in {x.unit_id for x in units if x.unit_id}}
    assert len(rows) == len(units)
    for row in rows:
        assert row.holdout == by_hash[row.unit_hash]
        if row.holdout:
            assert row.arm_id == control
            assert row.propensity == 1.0
            assert not row.explored


def test_unkeyed_requests_are_never_held_out(
    client: TestClient, admin, decide, runtime: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=3, holdout_share=0.5)
    body = {"experiment": exp["key"], "units": [{"unit_id": "u"} for _ in range(300)]}
    response = client.post("/v1/choose/batch", json=body, headers=decide)
    assert response.status_code == 200, response.text
    runtime.decision_log.flush()
    with Session(runtime.engine) as session:
        rows = session.exec(select(Decision).where(Decision.experiment_id == exp["id"])).all()
    assert len(rows) == 300
    assert not any(row.holdout for row in rows)
    assert len({row.arm_id for row in rows}) == 3


def test_holdout_share_is_validated_by_name(client: TestClient, admin) -> None:
    for bad in (-0.1, 0.9, "half"):
        body = {"key": "bad-holdout", "name": "x", "arms": [{"content": "a"}], "holdout_share": bad}
        response = client.post("/v1/experiments", json=body, headers=admin)
        assert response.status_code == 422, response.text
        assert "holdout_share" in response.text


def test_membership_is_nested_and_stable() -> None:
    hashes = [f"{i:032x}" for i in range(0, 2**32, 2**32 // 997)]
    small = {h for h in hashes if in_holdout(h, 0.1)}
    large = {h for h in hashes if in_holdout(h, 0.3)}
    assert small <= large
    assert not any(in_holdout(h, 0.0) for h in hashes)


def _three_mailings(
    client: TestClient, admin, ingest, runtime: Runtime, clock: ManualClock
) -> dict:
    """An experiment with a 40% holdout after three matured mailings to 800 people; the
    challenger clicks at 12%, the control at 3%."""
    rng = np.random.default_rng(3)
    exp = create_random_experiment(
        client, admin, arms=2, holdout_share=0.4, attribution_window_hours=24
    )
    control = next(arm["id"] for arm in exp["arms"] if arm["control"])
    events = []
    for send in range(3):
        units = [Unit(f"person-{u}", f"mail-{send}") for u in range(800)]
        for choice in runtime.decider.choose(exp["key"], units):
            rate = 0.03 if choice.arm.id == control else 0.12
            if rng.random() < rate:
                at = clock.now() + timedelta(minutes=10)
                events.append(
                    {
                        "event_id": f"c-{len(events)}",
                        "decision_id": choice.decision_id,
                        "type": "click",
                        "occurred_at": at.isoformat(),
                    }
                )
        clock.advance(24)
    assert client.post("/v1/events", json=events, headers=ingest).status_code == 200
    clock.advance(48)
    return exp


def test_the_value_route_measures_the_lift_over_the_holdout(
    client: TestClient, admin, ingest, runtime: Runtime, clock: ManualClock
) -> None:
    exp = _three_mailings(client, admin, ingest, runtime, clock)
    value = client.get(f"/v1/experiments/{exp['key']}/value", headers=admin).json()
    months = client.get("/v1/libraries/default/value", headers=admin).json()["months"]
    holdout = value["holdout"]
    assert holdout["available"] is True
    assert holdout["holdout"]["rate"] < 0.05  # held-out units only ever got the control
    assert holdout["served"]["rate"] > holdout["holdout"]["rate"]
    low, high = holdout["interval"]
    assert 0 < low < holdout["lift"] < high
    assert holdout["gained"] == holdout["lift"] * holdout["served"]["decisions"]
    assert holdout["served"]["units"] + holdout["holdout"]["units"] == 800
    assert any(month["month"] == "2026-09" and month["available"] for month in months)


def test_the_report_carries_the_holdout_and_the_console_shows_it(
    client: TestClient, admin, ingest, runtime: Runtime, clock: ManualClock
) -> None:
    exp = _three_mailings(client, admin, ingest, runtime, clock)
    report = client.get(f"/v1/experiments/{exp['key']}/report", headers=admin).json()
    value = client.get(f"/v1/experiments/{exp['key']}/value", headers=admin).json()
    held = report["holdout"]
    assert held["share"] == 0.4
    assert held["available"] is True
    # The same lift the value route measures, from the same matured decisions.
    assert held["lift"] == pytest.approx(value["holdout"]["lift"])
    assert held["interval"] == pytest.approx(value["holdout"]["interval"])
    low, high = held["interval"]
    assert 0 < low < held["lift"] < high
    assert held["gained"] == pytest.approx(held["lift"] * held["served"]["decisions"])
    # About 40% of the 800 people, three decisions each.
    assert 250 < held["holdout"]["units"] < 390
    assert held["holdout"]["decisions"] == 3 * held["holdout"]["units"]

    origin = {"Origin": "http://testserver"}
    form = {"name": "Reviewer", "key": admin["Authorization"].removeprefix("Bearer ")}
    assert client.post("/console/sign-in", data=form, headers=origin).status_code in (200, 303)
    page = client.get(f"/console/experiments/{exp['key']}").text
    assert "Lift over the holdout" in page
    assert f"{held['lift'] * 100:+.2f} points" in page
    assert f"{held['gained']:+.0f} successes gained" in page
    assert f"holdout {held['holdout']['units']:,} units" in page


def test_the_report_has_no_holdout_without_one_and_says_when_it_is_too_early(
    client: TestClient, admin, decide, runtime: Runtime
) -> None:
    plain = create_random_experiment(client, admin, arms=2)
    report = client.get(f"/v1/experiments/{plain['key']}/report", headers=admin).json()
    assert report["holdout"] is None
    held_out = create_random_experiment(client, admin, arms=2, holdout_share=0.2)
    runtime.decider.choose(held_out["key"], [Unit(f"person-{u}") for u in range(50)])
    runtime.decision_log.flush()
    report = client.get(f"/v1/experiments/{held_out['key']}/report", headers=admin).json()
    # Decisions made just now have not matured: no lift yet, and the reason.
    assert report["holdout"]["available"] is False
    assert "attribution window" in report["holdout"]["note"]
    assert report["holdout"]["lift"] is None
