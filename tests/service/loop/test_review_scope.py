"""The review scope: what a reviewer's key may do through the API, and what it may not."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.core.runtime import Runtime
from tests.service.factories import create_random_experiment


@pytest.fixture
def review(runtime: Runtime) -> dict[str, str]:
    _row, raw = runtime.api_keys.create(name="Rita (marketing)", scopes=["review"])
    return {"Authorization": f"Bearer {raw}"}


def test_review_reads_creates_and_manages_arms_as_itself(client: TestClient, review, admin):
    exp = create_random_experiment(client, review, arms=2)
    key = exp["key"]
    for path in ("", "/report", "/history", "/loop-runs", "/learnings"):
        response = client.get(f"/v1/experiments/{key}{path}", headers=review)
        assert response.status_code == 200, (path, response.text)
    assert client.get("/v1/experiments", headers=review).status_code == 200
    assert client.get("/v1/proposals", headers=review).status_code == 200
    added = client.post(
        f"/v1/experiments/{key}/arms", json={"content": "A third line"}, headers=review
    )
    assert added.status_code == 201, added.text
    arm_id = added.json()["id"]
    for verb in ("suspend", "restore", "retire"):
        response = client.post(
            f"/v1/experiments/{key}/arms/{arm_id}/{verb}",
            json={"reason": f"{verb} for the test"},
            headers=review,
        )
        assert response.status_code == 200, (verb, response.text)
    history = client.get(f"/v1/experiments/{key}/arms/{arm_id}/history", headers=review).json()
    assert [(h["to_status"], h["actor"]) for h in history] == [
        ("live", "Rita (marketing)"),
        ("suspended", "Rita (marketing)"),
        ("live", "Rita (marketing)"),
        ("retired", "Rita (marketing)"),
    ]
    patched = client.patch(
        f"/v1/experiments/{key}",
        json={"brief": {"audience": "new parents"}, "content_rules": {"banned_phrases": ["free"]}},
        headers=review,
    )
    assert patched.status_code == 200, patched.text
    run = client.post(f"/v1/experiments/{key}/loop-runs", headers=review)
    assert run.status_code == 201, run.text
    assert run.json()["actor"] == "Rita (marketing)"
    runs = client.get(f"/v1/experiments/{key}/loop-runs", headers=review).json()["runs"]
    assert [r["actor"] for r in runs] == ["Rita (marketing)"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/admin/keys", {"name": "x", "scopes": ["admin"]}),
        ("GET", "/v1/admin/keys", None),
        ("DELETE", "/v1/admin/keys/1", None),
        ("POST", "/v1/admin/purge", None),
        ("POST", "/v1/admin/replay", {}),
        ("GET", "/v1/admin/dead-letters", None),
        ("POST", "/v1/admin/stats/rebuild", None),
        ("DELETE", "/v1/units/u1", None),
        ("POST", "/v1/experiments/{key}/pause", None),
        ("POST", "/v1/experiments/{key}/archive", None),
        ("POST", "/v1/experiments/{key}/arms/{arm}/control", None),
        ("POST", "/v1/choose", {"experiment": "{key}"}),
    ],
)
def test_review_is_refused_admin_routes(client: TestClient, review, admin, method, path, body):
    exp = create_random_experiment(client, admin, arms=2)
    arm = exp["arms"][1]["id"]
    url = path.format(key=exp["key"], arm=arm)
    if body and "experiment" in body:
        body = {"experiment": exp["key"]}
    response = client.request(method, url, json=body, headers=review)
    assert response.status_code == 403, (url, response.text)
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("primary_metric", "open"),
        ("exposure_event", "delivered"),
        ("attribution_window_hours", 12.0),
        ("half_life_hours", 48.0),
    ],
)
def test_review_cannot_change_what_is_measured(client: TestClient, review, admin, field, value):
    exp = create_random_experiment(client, admin, arms=2)
    url = f"/v1/experiments/{exp['key']}"
    refused = client.patch(url, json={field: value}, headers=review)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["details"] == {"field": field}
    assert client.get(url, headers=admin).json()[field] == exp[field]  # unchanged
    # Sending the current value back (a whole form re-posted) is not a change.
    same = client.patch(url, json={field: exp[field]}, headers=review)
    assert same.status_code == 200, same.text
    assert client.patch(url, json={field: value}, headers=admin).status_code == 200


def test_decide_and_ingest_keys_cannot_review(client: TestClient, admin, decide, ingest):
    exp = create_random_experiment(client, admin, arms=2)
    for headers in (decide, ingest):
        response = client.get(f"/v1/experiments/{exp['key']}/report", headers=headers)
        assert response.status_code == 403
        response = client.post("/v1/proposals/1/reject", json={"reason": "x"}, headers=headers)
        assert response.status_code == 403


def test_a_review_key_is_minted_by_admin_only(client: TestClient, admin, review):
    created = client.post(
        "/v1/admin/keys", json={"name": "Rita", "scopes": ["review"]}, headers=admin
    )
    assert created.status_code == 201, created.text
    assert created.json()["scopes"] == ["review"]


def test_experiment_changes_record_who_made_them(client: TestClient, review, admin):
    exp = create_random_experiment(client, review, arms=2)
    url = f"/v1/experiments/{exp['key']}"
    brief = {"audience": "new parents", "goal": "first order", "brand_voice": "warm"}
    assert client.patch(url, json={"brief": brief}, headers=review).status_code == 200
    # A patch that changes nothing records nothing.
    assert client.patch(url, json={"brief": brief}, headers=review).status_code == 200
    assert client.post(f"{url}/pause", headers=admin).status_code == 200
    changes = client.get(f"{url}/changes", headers=review)
    assert changes.status_code == 200, changes.text
    assert [(c["action"], c["actor"], c["changes"]) for c in changes.json()] == [
        ("created", "Rita (marketing)", {}),
        ("settings", "Rita (marketing)", {"brief": brief}),
        ("pause", "test admin", {"status": "paused"}),
    ]
