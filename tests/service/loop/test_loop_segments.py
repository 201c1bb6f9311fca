"""The loop records where a library learning holds and where it fails, per segment, from
the experiment's own evidence in each segment (statistical pass: no LLM needed)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from service.core.runtime import Runtime
from service.core.sessions import unit_of_work
from service.libraries import service as library_domain
from service.models import utcnow
from tests.service.loop_fixtures import publish, run_loop
from variants.learnings import Evidence, LearningOp, apply_operations

# (content, tags, click rate among lapsed users, among new users): questions win big with
# lapsed users and lose with new ones; on all traffic they still win.
ARMS: list[tuple[str, list[str], float, float]] = [
    ("Ready for the new season edit?", ["question"], 0.12, 0.03),
    ("Have you seen our spring collection?", ["question"], 0.11, 0.025),
    ("Looking for the weekend essentials?", ["question"], 0.13, 0.035),
    ("Discover the styles everyone is buying", [], 0.03, 0.06),
    ("Meet fresh picks in your size", [], 0.035, 0.055),
    ("Shop this week's best sellers", [], 0.025, 0.065),
]
SEGMENT_RATES = {"lapsed": 2, "new": 3}  # index of each segment's rate in ARMS


def _feed(client: TestClient, decide, ingest, runtime: Runtime, experiment: dict[str, Any]):
    rates = {
        (arm["id"], segment): spec[column]
        for arm, spec in zip(experiment["arms"], ARMS, strict=True)
        for segment, column in SEGMENT_RATES.items()
    }
    events = []
    for segment in SEGMENT_RATES:
        response = client.post(
            "/v1/choose/batch",
            json={
                "experiment": experiment["key"],
                "units": [
                    {"unit_id": f"{segment}-{i}", "context": {"tenure": segment}}
                    for i in range(3600)
                ],
            },
            headers=decide,
        )
        assert response.status_code == 200, response.text
        seen: dict[int, int] = {}
        for decision in response.json()["decisions"]:
            arm_id = decision["arm"]["id"]
            k = seen.get(arm_id, 0)
            seen[arm_id] = k + 1
            rate = rates[(arm_id, segment)]
            if int((k + 1) * rate) > int(k * rate):
                events.append({"decision_id": decision["decision_id"], "type": "click"})
    runtime.decision_log.flush()
    for start in range(0, len(events), 500):
        chunk = [
            event | {"event_id": f"click-{start + i}"}
            for i, event in enumerate(events[start : start + 500])
        ]
        response = client.post("/v1/events", json=chunk, headers=ingest)
        assert response.status_code == 200, response.text
    publish(runtime)


def test_a_learning_holds_for_lapsed_users_and_fails_for_new_ones(
    client: TestClient, admin, decide, ingest, runtime: Runtime
) -> None:
    body = {
        "key": "tenure-test",
        "name": "Subject lines by tenure",
        "arms": [
            {"content": content, "tags": tags, "control": i == 3}
            for i, (content, tags, _lapsed, _new) in enumerate(ARMS)
        ],
        "min_exposures": 200,
        "min_successes": 3,
        "segment_attribute": "tenure",
        "library": "tenure-lib",
    }
    response = client.post("/v1/experiments", json=body, headers=admin)
    assert response.status_code == 201, response.text
    experiment = response.json()
    _feed(client, decide, ingest, runtime, experiment)

    # The library already claims that questions win (learnt elsewhere).
    first = experiment["arms"][0]["id"]
    with unit_of_work(runtime.engine, runtime.after_commit_handlers()) as session:
        library = library_domain.resolve(session, "tenure-lib")
        state, _applied, _dropped = apply_operations(
            [],
            [LearningOp(op="add", claim="Questions beat statements", evidence_arm_ids=[first])],
            evidence={
                first: Evidence(
                    arm_id=first,
                    exposures=900,
                    successes=60,
                    effect=0.07,
                    ci_low=0.05,
                    ci_high=0.09,
                )
            },
            now=utcnow(),
            channel="email",
        )
        library_domain.save(session, library, experiment_id=experiment["id"], learnings=state)

    run = run_loop(client, admin, experiment["key"])
    assert run["status"] == "succeeded", run
    assert "segment verdict(s)" in run["summary"]

    view = client.get("/v1/libraries/tenure-lib/learnings", headers=admin).json()
    (learning,) = view["learnings"]
    assert learning["tags"] == []  # none recorded: read from the claim when judged
    holds = [(v["experiment_key"], v["segment"]) for v in learning["holds"]]
    failed = [(v["experiment_key"], v["segment"]) for v in learning["failed"]]
    assert holds == [("tenure-test", "lapsed")]
    assert failed == [("tenure-test", "new")]
    verdict = learning["failed"][0]
    assert sorted(verdict["arm_ids"]) == sorted(arm["id"] for arm in experiment["arms"])
    assert "'question' x0." in verdict["detail"]  # the odds fall with a question for new users
    assert "'question' x4." in learning["holds"][0]["detail"]
    markdown = client.get(
        "/v1/libraries/tenure-lib/learnings", params={"format": "markdown"}, headers=admin
    ).text
    assert "holds in: tenure-test / lapsed" in markdown
    assert "failed in: tenure-test / new" in markdown

    # A second run on the same evidence has nothing new to record.
    again = run_loop(client, admin, experiment["key"])
    assert "segment verdict" not in again["summary"]
