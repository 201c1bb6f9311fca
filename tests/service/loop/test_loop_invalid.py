"""Invalid requests to the loop's endpoints: each answers in the error shape, naming the
field at fault."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.core.runtime import Runtime
from service.core.settings import Settings
from simulation.copywriter_server import CopywriterControl
from tests.service.loop_fixtures import (
    BANNED,
    llm_settings,
    pending,
    run_loop,
    seed_experiment,
)


@pytest.fixture
def settings(settings: Settings, copywriter_server: tuple[str, CopywriterControl]) -> Settings:
    copywriter_server[1].reset()
    return llm_settings(settings, copywriter_server[0])


@pytest.fixture
def proposals(client: TestClient, admin, decide, ingest, runtime: Runtime) -> list[dict[str, Any]]:
    exp = seed_experiment(client, admin, decide, ingest, runtime, sends=900)
    run_loop(client, admin, exp["key"])
    found = pending(client, admin, exp["key"])
    assert found
    return found


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    return error


def test_unknown_proposal_is_404(client: TestClient, admin):
    for verb, body in (("approve", {}), ("reject", {"reason": "no"})):
        error = _error(client.post(f"/v1/proposals/999999/{verb}", json=body, headers=admin), 404)
        assert error["details"] == {"field": "proposal_id"}


def test_deciding_twice_is_409(client: TestClient, admin, proposals):
    first = proposals[0]["id"]
    assert client.post(f"/v1/proposals/{first}/approve", headers=admin).status_code == 200
    for verb, body in (("approve", {}), ("reject", {"reason": "changed my mind"})):
        error = _error(client.post(f"/v1/proposals/{first}/{verb}", json=body, headers=admin), 409)
        assert error["details"] == {"field": "proposal_id"}
        assert "already approved" in error["message"]


def test_edit_breaking_the_rules_is_422_with_rule_codes(client: TestClient, admin, proposals):
    target = proposals[0]["id"]
    edited = f"{BANNED.title()} savings on {{{{ city }}}} " + "x" * 80
    error = _error(
        client.post(f"/v1/proposals/{target}/approve", json={"content": edited}, headers=admin),
        422,
    )
    assert error["details"]["field"] == "content"
    assert set(error["details"]["rules"]) == {"too_long", "banned_phrase", "unknown_placeholder"}
    still = {p["id"]: p["status"] for p in proposals}
    assert still[target] == "pending"


def test_edit_duplicating_a_live_arm_is_422(client: TestClient, admin, proposals):
    error = _error(
        client.post(
            f"/v1/proposals/{proposals[0]['id']}/approve",
            json={"content": "Ready for the new season edit??"},
            headers=admin,
        ),
        422,
    )
    assert error["details"]["rules"] == ["near_duplicate"]
    assert error["details"]["duplicate_of"].endswith("(live)")


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "reason"), ({"reason": ""}, "reason"), ({"reason": "ok", "extra": 1}, "extra")],
)
def test_reject_needs_a_reason(client: TestClient, admin, proposals, body, field):
    error = _error(
        client.post(f"/v1/proposals/{proposals[0]['id']}/reject", json=body, headers=admin), 422
    )
    assert error["details"][0]["field"] == field


def test_bad_approve_bodies_are_422(client: TestClient, admin, proposals):
    url = f"/v1/proposals/{proposals[0]['id']}/approve"
    for body, field in (
        ({"content": ""}, "content"),
        ({"tags": ["x" * 41]}, "tags"),
        ({"contents": "typo"}, "contents"),
    ):
        error = _error(client.post(url, json=body, headers=admin), 422)
        assert error["details"][0]["field"] == field


def test_unknown_experiment_is_404(client: TestClient, admin):
    for method, path in (
        ("post", "/v1/experiments/nope/loop-runs"),
        ("get", "/v1/experiments/nope/loop-runs"),
        ("get", "/v1/experiments/nope/learnings"),
        ("get", "/v1/proposals?experiment=nope"),
    ):
        error = _error(getattr(client, method)(path, headers=admin), 404)
        assert error["details"] == {"field": "experiment"}


def test_bad_queries_are_422(client: TestClient, admin):
    assert _error(client.get("/v1/proposals?status=maybe", headers=admin), 422)
    error = _error(client.get("/v1/experiments/x/learnings?format=pdf", headers=admin), 422)
    assert error["details"][0]["field"] == "format"
    assert _error(client.get("/v1/experiments/x/loop-runs?limit=0", headers=admin), 422)


def test_the_loop_needs_an_admin_key(client: TestClient, decide):
    for method, path in (
        ("post", "/v1/experiments/x/loop-runs"),
        ("get", "/v1/proposals"),
        ("post", "/v1/proposals/1/approve"),
    ):
        assert getattr(client, method)(path).status_code == 401
        assert getattr(client, method)(path, headers=decide).status_code == 403
