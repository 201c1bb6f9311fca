"""Bad input gets a 4xx in the one error shape, naming the field; never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.service.factories import create_random_experiment


def assert_error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    if field is not None:
        text = str(body["error"]["details"]) + body["error"]["message"]
        assert field in text, body
    return body["error"]


def test_missing_and_wrong_keys(client: TestClient, admin, decide, ingest):
    exp = create_random_experiment(client, admin)
    body = {"experiment": exp["key"]}
    assert_error(client.post("/v1/choose", json=body), 401, "authorization")
    assert_error(
        client.post("/v1/choose", json=body, headers={"Authorization": "Bearer nope"}),
        401,
        "authorization",
    )
    assert_error(
        client.post("/v1/choose", json=body, headers={"Authorization": "Basic abc"}),
        401,
        "authorization",
    )
    assert_error(client.post("/v1/choose", json=body, headers=ingest), 403, "authorization")
    assert_error(
        client.post("/v1/events", json={"event_id": "a", "type": "click"}, headers=decide), 403
    )
    assert_error(client.get("/v1/experiments", headers=decide), 403)
    assert client.post("/v1/choose", json=body, headers=admin).status_code == 200


def test_revoked_key_stops_working(client: TestClient, admin):
    created = client.post(
        "/v1/admin/keys", json={"name": "esp", "scopes": ["decide"]}, headers=admin
    )
    assert created.status_code == 201
    key = created.json()
    headers = {"Authorization": f"Bearer {key['key']}"}
    exp = create_random_experiment(client, admin)
    assert (
        client.post("/v1/choose", json={"experiment": exp["key"]}, headers=headers).status_code
        == 200
    )
    listed = client.get("/v1/admin/keys", headers=admin).json()["keys"]
    assert key["id"] in {k["id"] for k in listed}
    assert all("key" not in k for k in listed)
    assert client.delete(f"/v1/admin/keys/{key['id']}", headers=admin).status_code == 200
    assert_error(client.post("/v1/choose", json={"experiment": exp["key"]}, headers=headers), 401)
    assert_error(client.delete("/v1/admin/keys/99999", headers=admin), 404, "key_id")
    assert_error(
        client.post("/v1/admin/keys", json={"name": "x", "scopes": ["root"]}, headers=admin),
        422,
        "scopes",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "experiment"),
        ({"experiment": ""}, "experiment"),
        ({"experiment": 5}, "experiment"),
        ({"experiment": "x", "unit_id": 12.5}, "unit_id"),
        ({"experiment": "x", "unit_id": True}, "unit_id"),
        ({"experiment": "x", "unit_id": "u" * 300}, "unit_id"),
        ({"experiment": "x", "send_id": ""}, "send_id"),
        ({"experiment": "x", "context": {"a": {"nested": 1}}}, "context"),
        ({"experiment": "x", "context": "tier=gold"}, "context"),
        ({"experiment": "x", "surprise": 1}, "surprise"),
    ],
)
def test_choose_bad_bodies(client: TestClient, decide, body, field):
    assert_error(client.post("/v1/choose", json=body, headers=decide), 422, field)


def test_choose_malformed_json_and_unknown_experiment(client: TestClient, decide):
    response = client.post(
        "/v1/choose",
        content=b'{"experiment": ',
        headers={**decide, "content-type": "application/json"},
    )
    error = assert_error(response, 422)
    assert "JSON" in error["message"]
    assert_error(
        client.post("/v1/choose", json={"experiment": "nope"}, headers=decide), 404, "experiment"
    )


def test_get_choose_needs_unit_and_send(client: TestClient, admin, decide):
    exp = create_random_experiment(client, admin)
    assert_error(
        client.get("/v1/choose", params={"experiment": exp["key"], "unit_id": "u"}, headers=decide),
        422,
        "send_id",
    )
    assert_error(
        client.get("/v1/choose", params={"experiment": exp["key"], "send_id": "s"}, headers=decide),
        422,
        "unit_id",
    )
    assert_error(
        client.get("/v1/choose", params={"unit_id": "u", "send_id": "s"}, headers=decide),
        422,
        "experiment",
    )


def test_batch_limits(client: TestClient, admin, decide):
    exp = create_random_experiment(client, admin)
    too_many = {"experiment": exp["key"], "units": [{} for _ in range(10_001)]}
    assert_error(client.post("/v1/choose/batch", json=too_many, headers=decide), 413, "units")
    assert_error(
        client.post(
            "/v1/choose/batch", json={"experiment": exp["key"], "units": []}, headers=decide
        ),
        422,
        "units",
    )
    ok = {"experiment": exp["key"], "units": [{} for _ in range(10_000)]}
    response = client.post("/v1/choose/batch", json=ok, headers=decide)
    assert response.status_code == 200
    assert len(response.json()["decisions"]) == 10_000


def test_oversize_body_is_413(client: TestClient, decide, runtime):
    limit = runtime.settings.max_body_bytes
    body = b'{"experiment": "' + b"x" * (limit + 10) + b'"}'
    response = client.post(
        "/v1/choose", content=body, headers={**decide, "content-type": "application/json"}
    )
    assert_error(response, 413, "body")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"exploration_share": 0}, "exploration_share"),
        ({"exploration_share": 1.0}, "exploration_share"),
        ({"exploration_share": "lots"}, "exploration_share"),
        ({"min_exposures": 0}, "min_exposures"),
        ({"primary_metric": "revenue"}, "primary_metric"),
        ({"exposure_event": "open"}, "exposure_event"),
        ({"guardrails": [{"metric": "unsubscribe", "tolerance": -1}]}, "guardrails"),
        ({"conversion_name": "purchase"}, "conversion_name"),
        ({"max_live_arms": 1}, "max_live_arms"),
        ({"attribution_window_hours": 0}, "attribution_window_hours"),
        ({"name": "x" * 201}, "name"),
        ({"unknown_knob": True}, "unknown_knob"),
    ],
)
def test_bad_experiment_settings(client: TestClient, admin, patch, field):
    exp = create_random_experiment(client, admin, arms=3)
    response = client.patch(f"/v1/experiments/{exp['key']}", json=patch, headers=admin)
    assert_error(response, 422, field)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"key": "Bad Key!", "name": "n", "arms": [{"content": "a"}]}, 422, "key"),
        ({"key": "ok", "name": "n", "arms": []}, 422, "arms"),
        ({"key": "ok", "name": "n"}, 422, "arms"),
        ({"key": "ok", "name": "n", "arms": [{"content": ""}]}, 422, "content"),
        ({"key": "ok", "name": "n", "arms": [{"content": "x" * 2001}]}, 422, "content"),
        (
            {
                "key": "ok",
                "name": "n",
                "arms": [{"content": "a", "control": True}, {"content": "b", "control": True}],
            },
            422,
            "arms",
        ),
        ({"key": "ok", "name": "n", "arms": [{"content": "a", "tags": ["x" * 41]}]}, 422, "tags"),
        (
            {
                "key": "ok",
                "name": "n",
                "max_live_arms": 1,
                "arms": [{"content": "a"}, {"content": "b"}],
            },
            422,
            "arms",
        ),
    ],
)
def test_bad_experiment_creation(client: TestClient, admin, body, status, field):
    assert_error(client.post("/v1/experiments", json=body, headers=admin), status, field)


def test_conflicts_and_unknowns(client: TestClient, admin):
    exp = create_random_experiment(client, admin, arms=2)
    key = exp["key"]
    again = {"key": key, "name": "dup", "arms": [{"content": "a"}]}
    assert_error(client.post("/v1/experiments", json=again, headers=admin), 409, "key")
    assert_error(client.get("/v1/experiments/missing", headers=admin), 404, "experiment")
    assert_error(
        client.post(
            f"/v1/experiments/{key}/arms/99999/retire", json={"reason": "x"}, headers=admin
        ),
        404,
        "arm_id",
    )
    arm = exp["arms"][0]["id"]
    assert_error(
        client.post(f"/v1/experiments/{key}/arms/{arm}/retire", json={}, headers=admin),
        422,
        "reason",
    )
    assert (
        client.post(
            f"/v1/experiments/{key}/arms/{arm}/retire", json={"reason": "lost"}, headers=admin
        ).status_code
        == 200
    )
    assert_error(
        client.post(
            f"/v1/experiments/{key}/arms/{arm}/restore", json={"reason": "x"}, headers=admin
        ),
        409,
        "status",
    )
    assert_error(client.post(f"/v1/experiments/{key}/resume", headers=admin), 409, "status")
    assert_error(
        client.post(f"/v1/experiments/{key}/arms/abc/retire", json={"reason": "x"}, headers=admin),
        422,
        "arm_id",
    )


def test_bad_events_body(client: TestClient, ingest, runtime):
    assert_error(
        client.post(
            "/v1/events",
            content=b"not json",
            headers={**ingest, "content-type": "application/json"},
        ),
        422,
        "JSON",
    )
    assert_error(client.post("/v1/events", json=[], headers=ingest), 422, "body")
    assert_error(client.post("/v1/events", json="click", headers=ingest), 422, "body")
    many = [
        {"event_id": str(i), "type": "click"}
        for i in range(runtime.settings.max_events_per_request + 1)
    ]
    assert_error(client.post("/v1/events", json=many, headers=ingest), 413, "body")


def test_unknown_webhook_provider_and_route(client: TestClient):
    assert_error(client.post("/v1/webhooks/acme", content=b"{}"), 404, "provider")
    assert_error(client.get("/v1/nothing-here"), 404)
    assert_error(client.put("/v1/choose", json={}), 405)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"experiment": "x", "unit_id": "u" * 300}, "unit_id: String should have at most 256"),
        ({"experiment": "x", "send_id": "s" * 200}, "send_id: String should have at most 128"),
        ({"experiment": "x", "send_id": ""}, "send_id: String should have at least 1 character"),
    ],
)
def test_recipient_ids_are_measured_in_characters(client: TestClient, decide, body, message):
    """A too-long id is named as a string (pydantic called it 'items' when the length sat
    on the optional field rather than on the string)."""
    error = assert_error(client.post("/v1/choose", json=body, headers=decide), 422)
    assert error["message"].startswith(message)
