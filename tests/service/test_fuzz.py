"""Schemathesis over /openapi.json on the real app, on both databases: every operation,
valid and invalid inputs, a valid key of the scope each needs. No 5xx, no response that
the document does not describe, no traceback in any body. A longer run: see README."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from schemathesis.python.asgi import shutdown_lifespans

from service.core.app import create_app
from service.core.runtime import Runtime
from tests.service import fuzz

EXAMPLES = 5  # per operation and mode: about 400 requests per database


@pytest.fixture
def target(runtime: Runtime) -> Iterator[tuple[Any, Callable[[], dict[str, str]]]]:
    runtime.settings = runtime.settings.model_copy(
        update={"generic_webhook_secret": fuzz.GENERIC_SECRET}
    )
    app = create_app(runtime=runtime)  # the engine passed in stays open on shutdown

    def make_keys() -> dict[str, str]:
        return {
            scope: runtime.api_keys.create(name=f"fuzz {scope}", scopes=[scope])[1]
            for scope in ("admin", "decide", "ingest")
        }

    with TestClient(app) as client:
        fuzz.seed_experiment(client, make_keys()["admin"])
    yield app, make_keys
    shutdown_lifespans()


def test_openapi_fuzz_finds_nothing(target) -> None:
    app, make_keys = target
    report = fuzz.run(app, make_keys, examples=EXAMPLES)
    assert report.server_errors == 0, report.failures
    assert report.failures == [], "\n".join(report.failures)
    # It really reached the operations: successes and the documented refusals both.
    assert report.requests > 300
    assert report.statuses[200] > 50
    assert report.statuses[422] > 50


def test_every_error_response_is_documented_in_our_shape(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "422" in responses, (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")) and path != "/readyz":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path)
            if operation.get("security"):
                assert {"401", "403"} <= set(responses), (method, path)
            if method in ("post", "patch") and not path.startswith("/v1/webhooks"):
                assert {"413", "415"} <= set(responses), (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
