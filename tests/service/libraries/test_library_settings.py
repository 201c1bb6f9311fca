"""A library's settings through the API: description, cap and half-life, validated, scoped
to review, and a lowered cap applied at once (least supported pruned first)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from service.core.runtime import Runtime
from service.core.sessions import unit_of_work
from service.libraries import service as library_domain
from service.models import utcnow
from tests.service.factories import create_random_experiment
from variants.learnings import Evidence, LearningOp, apply_operations


@pytest.fixture
def review(runtime: Runtime) -> dict[str, str]:
    _row, raw = runtime.api_keys.create(name="Rita (marketing)", scopes=["review"])
    return {"Authorization": f"Bearer {raw}"}


def _library_with_learnings(client: TestClient, admin, runtime: Runtime, name: str) -> None:
    """Four active learnings: L1 support 3, L2 support 1 (older), L3 support 2, L4 support 1."""
    exp = create_random_experiment(client, admin, library=name)
    arm = exp["arms"][0]["id"]
    evidence = {
        arm: Evidence(
            arm_id=arm, exposures=900, successes=40, effect=0.04, ci_low=0.03, ci_high=0.06
        )
    }
    now = utcnow()
    state: list = []
    claims = ["Questions win", "Emoji win", "Short lines win", "Numbers win"]
    for day, claim in enumerate(claims):
        state, _applied, _dropped = apply_operations(
            state,
            [LearningOp(op="add", claim=claim, evidence_arm_ids=[arm])],
            evidence=evidence,
            now=now - timedelta(days=10 - day),
        )
    for learning_id, times in (("L1", 2), ("L3", 1)):
        for _ in range(times):
            state, _applied, _dropped = apply_operations(
                state,
                [LearningOp(op="confirm", learning_id=learning_id, evidence_arm_ids=[arm])],
                evidence=evidence,
                now=now - timedelta(days=1),
            )
    with unit_of_work(runtime.engine, runtime.after_commit_handlers()) as session:
        library = library_domain.resolve(session, name)
        library_domain.save(session, library, experiment_id=exp["id"], learnings=state)


def test_a_lowered_cap_prunes_the_least_supported_at_once(
    client: TestClient, admin, review, runtime: Runtime
) -> None:
    _library_with_learnings(client, admin, runtime, "capped")
    response = client.patch(
        "/v1/libraries/capped",
        json={"cap": 2, "description": "Spring audience", "half_life_days": 90},
        headers=review,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cap"] == 2
    assert body["half_life_days"] == 90
    assert body["description"] == "Spring audience"
    assert body["active_learnings"] == 2
    # Lowest support first; of L2 and L4 (support 1 each) the one confirmed longest ago.
    assert sorted(body["pruned"]) == ["L2", "L4"]

    learnings = client.get("/v1/libraries/capped/learnings", headers=review).json()["learnings"]
    status = {item["id"]: item["status"] for item in learnings}
    assert status == {"L1": "active", "L2": "pruned", "L3": "active", "L4": "pruned"}
    reason = next(item["status_reason"] for item in learnings if item["id"] == "L2")
    assert "under 2" in reason
    assert "Rita (marketing)" in reason
    assert client.get("/v1/libraries/capped", headers=review).json()["cap"] == 2

    # Raising it again prunes nothing and revives nothing.
    raised = client.patch("/v1/libraries/capped", json={"cap": 10}, headers=review).json()
    assert raised["pruned"] == []
    assert raised["active_learnings"] == 2
    # A description alone touches no learning.
    same = client.patch("/v1/libraries/capped", json={"description": "x"}, headers=review)
    assert same.json()["pruned"] == []


def test_a_shorter_half_life_fades_old_claims_at_once(
    client: TestClient, admin, runtime: Runtime
) -> None:
    _library_with_learnings(client, admin, runtime, "fading")
    # L2 and L4 were last confirmed 9 and 7 days ago, L1 and L3 a day ago: with a 2-day
    # half-life, anything unconfirmed for over 4 days has faded.
    response = client.patch("/v1/libraries/fading", json={"half_life_days": 2}, headers=admin)
    assert response.status_code == 200, response.text
    assert sorted(response.json()["pruned"]) == ["L2", "L4"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cap": 0}, "cap"),
        ({"cap": 101}, "cap"),
        ({"cap": 2.5}, "cap"),
        ({"cap": "3"}, "cap"),
        ({"cap": None}, "cap"),
        ({"half_life_days": 0.5}, "half_life_days"),
        ({"half_life_days": None}, "half_life_days"),
        ({"half_life_days": "soon"}, "half_life_days"),
        ({"description": "x" * 2001}, "description"),
        ({"owner": "me"}, "owner"),
    ],
)
def test_invalid_settings_name_the_field(client: TestClient, admin, body, field) -> None:
    create_random_experiment(client, admin, library="strict")
    response = client.patch("/v1/libraries/strict", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert client.get("/v1/libraries/strict", headers=admin).json()["cap"] == 20


def test_unknown_library_and_scopes(client: TestClient, admin, decide, ingest) -> None:
    missing = client.patch("/v1/libraries/nope", json={"cap": 3}, headers=admin)
    assert missing.status_code == 404
    assert missing.json()["error"]["details"] == {"field": "library"}
    for headers in (decide, ingest):
        refused = client.patch("/v1/libraries/default", json={"cap": 3}, headers=headers)
        assert refused.status_code == 403, refused.text
    # The default library exists before any experiment names it.
    assert client.patch("/v1/libraries/default", json={"cap": 5}, headers=admin).json()["cap"] == 5
