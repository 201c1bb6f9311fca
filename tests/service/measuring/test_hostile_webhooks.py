"""Hostile input at every webhook adapter, through the real app on both databases, signed
with real keys: text a database cannot store dead-letters its event (2xx: the provider
never retries a poisoned batch forever) while the rest is counted; deep nesting is refused
before any parser recurses; far dates, huge numbers, nulls and huge strings are
dead-lettered with a reason naming the field; each provider's own content type is kept."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.core.runtime import Runtime
from service.models import DeadLetter
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many
from tests.service.measuring import test_webhooks_http as http
from tests.service.measuring.adapters import signers
from tests.service.measuring.test_webhooks_http import (
    PROVIDERS,
    Keys,
    Message,
    build,
    counts,
    sign_raw,
)
from tests.service.test_invalid_requests import assert_error

# The provider secrets and the settings that configure them, as the HTTP webhook tests
# set them up (pytest finds fixtures by name in this module).
sns_pem = http.sns_pem
good = http.good
certificate_dir = http.certificate_dir
settings = http.settings

HOSTILE_TEXT = {"nul": ("\x00", "NUL"), "surrogate": ("\ud800", "surrogate")}


def dead_letters(runtime: Runtime) -> list[str]:
    with Session(runtime.engine) as session:
        return [d.reason for d in session.exec(select(DeadLetter))]


def post(client: TestClient, provider: str, requests) -> list[dict]:
    results = []
    for body, headers in requests:
        response = client.post(f"/v1/webhooks/{provider}", content=body, headers=headers)
        assert response.status_code == 200, (provider, response.text)
        results.append(response.json())
    return results


@pytest.mark.parametrize("kind", sorted(HOSTILE_TEXT))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_unstorable_text_dead_letters_the_event_and_the_rest_is_counted(
    provider: str, kind: str, client: TestClient, admin, decide, runtime: Runtime, good: Keys
):
    text, marker = HOSTILE_TEXT[kind]
    exp = create_random_experiment(client, admin, arms=2)
    ids = [d["decision_id"] for d in decide_many(client, decide, runtime, exp["key"], 3)]
    messages = [Message(f"ok{i}", "click", {"bl_decision": d}) for i, d in enumerate(ids[:2])]
    if provider == "ses" and kind == "surrogate":
        # SNS signs MessageId as UTF-8, which cannot hold a lone surrogate: put it where
        # SES can carry it, in a message tag (inside the signed JSON, as an escape).
        messages.append(Message("badkey", "click", {"bl_decision": ids[2], f"t{text}": "v"}))
    else:
        messages.append(Message(f"bad{text}key", "click", {"bl_decision": ids[2]}))
    results = post(client, provider, build(provider, messages, good))
    rejected = [r for result in results for r in result["rejected"]]
    assert rejected, results
    reasons = dead_letters(runtime)
    assert reasons
    assert all(marker in reason for reason in reasons), reasons
    # The good events of the same provider are stored and counted.
    assert counts(runtime, exp["id"])["click"] == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_control_characters_are_stored_not_refused(
    provider: str, client: TestClient, admin, decide, runtime: Runtime, good: Keys
):
    exp = create_random_experiment(client, admin, arms=2)
    (d,) = [d["decision_id"] for d in decide_many(client, decide, runtime, exp["key"], 1)]
    post(
        client,
        provider,
        build(provider, [Message("k\x01\x1f\t", "click", {"bl_decision": d})], good),
    )
    assert dead_letters(runtime) == []
    assert counts(runtime, exp["id"])["click"] == 1


@pytest.mark.parametrize("levels", [33, 10_000])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_deep_nesting_is_refused_before_any_parser(
    provider: str, levels: int, client: TestClient, runtime: Runtime, good: Keys
):
    body = ("[" * levels + "1" + "]" * levels).encode()
    response = client.post(
        f"/v1/webhooks/{provider}", content=body, headers=sign_raw(provider, body, good)
    )
    error = assert_error(response, 422, "body")
    assert "nested deeper" in error["message"]
    assert dead_letters(runtime) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_keeps_its_own_content_type(
    provider: str, client: TestClient, admin, decide, runtime: Runtime, good: Keys
):
    # SNS posts text/plain; no adapter depends on the type: the route never answers 415.
    exp = create_random_experiment(client, admin, arms=2)
    (d,) = [d["decision_id"] for d in decide_many(client, decide, runtime, exp["key"], 1)]
    requests = build(provider, [Message("typed", "click", {"bl_decision": d})], good)
    plain = [(b, {**h, "content-type": "text/plain; charset=UTF-8"}) for b, h in requests]
    post(client, provider, plain)
    assert counts(runtime, exp["id"])["click"] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_huge_event_ids_are_dead_lettered_or_hashed(
    provider: str, client: TestClient, admin, decide, runtime: Runtime, good: Keys
):
    exp = create_random_experiment(client, admin, arms=2)
    ids = [d["decision_id"] for d in decide_many(client, decide, runtime, exp["key"], 2)]
    messages = [
        Message("short", "click", {"bl_decision": ids[0]}),
        Message("k" * 5000, "click", {"bl_decision": ids[1]}),
    ]
    post(client, provider, build(provider, messages, good))
    reasons = dead_letters(runtime)
    # Postmark sends no event id (its key is a digest); every other provider's id is
    # the de-duplication key, which has a column of 200 characters.
    expected_clicks = 2 if provider == "postmark" else 1
    assert counts(runtime, exp["id"])["click"] == expected_clicks
    assert all("longer than" in r for r in reasons)
    assert len(reasons) == (0 if provider == "postmark" else 1 + (provider == "braze"))


GENERIC_HOSTILE = [
    ('{"event_id": null, "type": "click"}', "event_id"),
    ('{"event_id": "t", "type": null}', "type"),
    (
        '{"event_id": "f", "type": "click", "occurred_at": "9999-12-31T23:59:59-23:59"}',
        "occurred_at",
    ),
    ('{"event_id": "g", "type": "click", "occurred_at": 1e300}', "occurred_at"),
    ('{"event_id": "h", "type": "click", "value": 1e400}', "value"),
    ('{"event_id": "i", "type": "click", "value": NaN}', "value"),
    ('{"event_id": "j", "type": "click", "machine": null}', "machine"),
    ('{"event_id": "k\\u0000", "type": "click"}', "event_key"),
    ('{"event_id": "l", "type": "click", "name": "n\\udfff"}', "name"),
    ('{"event_id": "m", "type": "click", "user_agent": "\\u0000"}', "user_agent"),
]


def test_generic_dead_letters_each_hostile_event_naming_the_field(
    client: TestClient, admin, decide, runtime: Runtime, good: Keys
):
    exp = create_random_experiment(client, admin, arms=2)
    (d,) = [d["decision_id"] for d in decide_many(client, decide, runtime, exp["key"], 1)]
    fine = json.dumps({"event_id": "fine", "type": "click", "decision_id": d})
    body = ("[" + ", ".join([fine, *(text for text, _ in GENERIC_HOSTILE)]) + "]").encode()
    response = client.post(
        "/v1/webhooks/generic", content=body, headers=sign_raw("generic", body, good)
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 1
    rejected = sorted(result["rejected"], key=lambda r: r["index"])
    assert [r["index"] for r in rejected] == list(range(1, len(GENERIC_HOSTILE) + 1))
    for r, (_text, field) in zip(rejected, GENERIC_HOSTILE, strict=True):
        assert field in r["reason"], (field, r)
    assert len(dead_letters(runtime)) == len(GENERIC_HOSTILE)
    assert counts(runtime, exp["id"])["click"] == 1


def test_signed_body_with_a_raw_nul_byte_is_kept_and_dead_lettered(
    client: TestClient, runtime: Runtime, good: Keys
):
    # Not JSON at all (a raw NUL byte): stored as bytes, dead-lettered with readable text.
    body = b'[{"event_id": "a\x00b"}]'
    response = client.post(
        "/v1/webhooks/generic", content=body, headers=sign_raw("generic", body, good)
    )
    assert response.status_code == 400, response.text
    [reason] = dead_letters(runtime)
    assert "JSON" in reason
    assert signers  # the signer module is what built every request above


def test_signed_body_with_an_integer_too_long_to_parse_is_dead_lettered(
    client: TestClient, runtime: Runtime, good: Keys
):
    body = b'[{"event_id": "a", "type": "click", "value": 1' + b"0" * 5000 + b"}]"
    response = client.post(
        "/v1/webhooks/generic", content=body, headers=sign_raw("generic", body, good)
    )
    assert response.status_code == 400, response.text
    [reason] = dead_letters(runtime)
    assert "JSON" in reason
