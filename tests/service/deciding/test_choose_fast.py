"""The plain ASGI path for POST /v1/choose and /v1/choose/batch answers as the framework does.

With the key cache on (as in production; the other tests run with it off, which sends every
request through the framework), ordinary requests are answered by ``ChooseFastPath`` without
reaching the application, and every mistake is answered with the very status and body the
application gives without the fast path.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from service.core.app import create_app
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.deciding.fast_path import ChooseFastPath
from service.deciding.holdout import in_holdout
from tests.conftest import SIGNING_KEYS
from tests.service.factories import create_random_experiment


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        signing_keys=SIGNING_KEYS,
        run_background=False,
        api_key_cache_seconds=60,
        max_batch_units=50,
        _env_file=None,  # type: ignore[call-arg]
    )


class Passed:
    """Counts the requests the fast path hands on to the application."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture
def passed(client: TestClient) -> Passed:
    app = client.app
    assert isinstance(app, FastAPI)
    fast = app.middleware_stack
    while not isinstance(fast, ChooseFastPath):  # the framework's own layers sit outside
        fast = fast.app  # type: ignore[union-attr]
    fast.app = Passed(fast.app)
    return fast.app


@pytest.fixture
def plain(runtime: Runtime) -> TestClient:
    """The same application and runtime without the fast path."""
    app = create_app(runtime=runtime)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not ChooseFastPath]
    app.state.runtime = runtime  # the client fixture's lifespan started the runtime
    return TestClient(app, raise_server_exceptions=False)


def warm(client: TestClient, key: dict[str, str], experiment: str) -> None:
    """The first request with a key reads it from the database (and caches it)."""
    response = client.post("/v1/choose", json={"experiment": experiment}, headers=key)
    assert response.status_code == 200, response.text


def test_ordinary_requests_never_reach_the_framework(
    client: TestClient, plain: TestClient, admin, decide, passed: Passed, runtime: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=3)
    warm(client, decide, exp["key"])
    passed.paths.clear()

    body = {"experiment": exp["key"], "unit_id": "u1"}
    one = client.post("/v1/choose", json=body, headers=decide)
    units = [{"unit_id": f"u{i}", "context": {"tier": "gold"}} for i in range(20)]
    batch = client.post(
        "/v1/choose/batch", json={"experiment": exp["key"], "units": units}, headers=decide
    )

    assert passed.paths == []
    assert one.status_code == 200
    assert one.headers["content-type"] == "application/json"
    token = runtime.signer.verify(one.json()["decision_id"])
    assert token.arm_id == one.json()["arm"]["id"]
    assert batch.status_code == 200
    assert len(batch.json()["decisions"]) == 20
    assert runtime.decision_log.flush() == 21 + 1  # the warm-up's decision too


def test_a_keyed_decision_is_the_same_answer_on_both_paths(
    client: TestClient, plain: TestClient, admin, decide, passed: Passed
) -> None:
    exp = create_random_experiment(client, admin, arms=4)
    warm(client, decide, exp["key"])
    body = {"experiment": exp["key"], "unit_id": "u-42", "send_id": "spring"}
    passed.paths.clear()

    fast = client.post("/v1/choose", json=body, headers=decide)
    framework = plain.post("/v1/choose", json=body, headers=decide)

    assert passed.paths == []
    assert fast.status_code == framework.status_code == 200
    assert fast.content == framework.content


def mistakes(experiment: str, decide: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """(path, httpx request arguments) of requests the caller got wrong, one per mistake."""
    json_type = {"Content-Type": "application/json"}
    ok = f'{{"experiment": "{experiment}"}}'
    return [
        ("/v1/choose", {"json": {"experiment": "no-such-experiment"}, "headers": decide}),
        ("/v1/choose", {"json": {"unit_id": "u1"}, "headers": decide}),
        ("/v1/choose", {"json": {"experiment": experiment, "unit_id": ""}, "headers": decide}),
        ("/v1/choose", {"content": b"{not json", "headers": {**decide, **json_type}}),
        ("/v1/choose", {"content": b"\xff\xfe", "headers": {**decide, **json_type}}),
        ("/v1/choose", {"content": ok, "headers": {**decide, "Content-Type": "text/plain"}}),
        ("/v1/choose", {"content": ok, "headers": decide}),
        ("/v1/choose", {"json": {"experiment": experiment}}),
        ("/v1/choose", {"json": {"experiment": experiment}, "headers": {"Authorization": "x"}}),
        (
            "/v1/choose",
            {"json": {"experiment": experiment, "unit_id": "u\u0000"}, "headers": decide},
        ),
        ("/v1/choose", {"content": "[" * 70 + "]" * 70, "headers": {**decide, **json_type}}),
        ("/v1/choose", {"content": b"x" * 2_000_000, "headers": {**decide, **json_type}}),
        (
            "/v1/choose/batch",
            {
                "json": {"experiment": experiment, "units": [{"unit_id": "u"}] * 51},
                "headers": decide,
            },
        ),
        ("/v1/choose/batch", {"json": {"experiment": experiment, "units": 3}, "headers": decide}),
        (
            "/v1/choose/batch",
            {"json": {"experiment": "no-such-experiment", "units": []}, "headers": decide},
        ),
    ]


def test_every_mistake_gets_the_frameworks_answer(
    client: TestClient, plain: TestClient, admin, decide
) -> None:
    exp = create_random_experiment(client, admin, arms=3)
    warm(client, decide, exp["key"])

    for path, request in mistakes(exp["key"], decide):
        fast = client.post(path, **request)
        framework = plain.post(path, **request)
        assert 400 <= fast.status_code < 500, (path, request.get("json"), fast.text)
        assert (fast.status_code, fast.json()) == (framework.status_code, framework.json())
        assert set(fast.json()) == {"error"}


def test_a_query_string_goes_through_the_framework(
    client: TestClient, admin, decide, passed: Passed
) -> None:
    exp = create_random_experiment(client, admin, arms=3)
    warm(client, decide, exp["key"])
    passed.paths.clear()

    answer = client.post("/v1/choose?x=1", json={"experiment": exp["key"]}, headers=decide)

    assert answer.status_code == 200
    assert passed.paths == ["/v1/choose"]


def test_the_answer_says_when_a_unit_is_held_out_on_every_path(
    client: TestClient, plain: TestClient, admin, decide, passed: Passed, runtime: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=3, holdout_share=0.5)
    control = next(arm["id"] for arm in exp["arms"] if arm["control"])
    warm(client, decide, exp["key"])
    units = [{"unit_id": f"u-{i}", "send_id": "spring"} for i in range(40)]
    held = {u["unit_id"] for u in units if in_holdout(runtime.signer.unit_hash(u["unit_id"]), 0.5)}
    assert 5 < len(held) < 35
    body = {"experiment": exp["key"], "units": units}
    passed.paths.clear()

    fast = client.post("/v1/choose/batch", json=body, headers=decide)  # stored
    runtime.decider.forget_keyed()
    framework = plain.post("/v1/choose/batch", json=body, headers=decide)  # read back
    cached = client.post("/v1/choose/batch", json=body, headers=decide)  # keyed cache
    single = [
        client.post("/v1/choose", json={"experiment": exp["key"], **u}, headers=decide)
        for u in units[:10]
    ]
    query = {"experiment": exp["key"], "unit_id": "u-0", "send_id": "spring"}
    got = client.get("/v1/choose", params=query, headers=decide)
    unkeyed = client.post(
        "/v1/choose/batch",
        json={"experiment": exp["key"], "units": [{"unit_id": u["unit_id"]} for u in units]},
        headers=decide,
    )

    assert passed.paths == ["/v1/choose"]  # only the GET reaches the framework
    assert fast.status_code == framework.status_code == cached.status_code == 200
    assert fast.content == framework.content == cached.content
    answers = fast.json()["decisions"]
    assert [a["holdout"] for a in answers] == [u["unit_id"] in held for u in units]
    for answer in answers:
        if answer["holdout"]:
            assert (answer["arm"]["id"], answer["propensity"]) == (control, 1.0)
            assert answer["explored"] is False
    assert [s.json() for s in single] == answers[:10]
    assert got.json() == answers[0]
    assert not any(a["holdout"] for a in unkeyed.json()["decisions"])

    schema = client.get("/openapi.json").json()["components"]["schemas"]["ChooseOut"]
    assert "holdout" in schema["required"]
    assert schema["properties"]["holdout"]["type"] == "boolean"
