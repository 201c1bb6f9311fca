from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from service.measuring.adapters import (
    GenericAdapter,
    GenericCredentials,
    WebhookAuthError,
    WebhookPayloadError,
)
from service.measuring.adapters.generic import sign
from tests.service.measuring.adapters.signers import (
    DECISION_A,
    DECISION_B,
    NOW,
    NOW_TS,
    dumps,
    generic_headers,
)

ADAPTER = GenericAdapter()
SECRET = "whsec_generic_current"
CREDENTIALS = GenericCredentials(secrets=(SECRET,))


def _event(event_id: str | None = "evt-1", **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": event_id,
        "decision_id": DECISION_A,
        "type": "conversion",
        "name": "purchase",
        "value": 49.5,
        "occurred_at": "2026-03-02T11:00:00Z",
    }
    event.update(fields)
    return event


def test_signed_list_is_accepted_and_parsed() -> None:
    body = dumps(
        [_event(), _event("evt-2", decision_id=None, decision_ids=[DECISION_A, DECISION_B])]
    )
    headers = generic_headers(SECRET, body)
    ADAPTER.verify(headers, body, CREDENTIALS, NOW)

    batch = ADAPTER.parse(body, headers)

    first, second = batch.events
    assert (first.type, first.name, first.value) == ("conversion", "purchase", 49.5)
    assert first.decision_ids == (DECISION_A,)
    assert second.decision_ids == (DECISION_A, DECISION_B)
    assert first.occurred_at == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def test_object_with_events_is_accepted() -> None:
    body = dumps({"events": [_event()]})
    assert len(ADAPTER.parse(body, generic_headers(SECRET, body)).events) == 1


def test_sign_helper_matches_the_documented_scheme() -> None:
    body = dumps([_event()])
    assert sign(SECRET, body, NOW_TS) == generic_headers(SECRET, body)["x-banditloop-signature"]


def test_altered_body_is_rejected() -> None:
    body = dumps([_event()])
    headers = generic_headers(SECRET, body)
    with pytest.raises(WebhookAuthError, match="signature"):
        ADAPTER.verify(headers, body.replace(b"49.5", b"4950"), CREDENTIALS, NOW)


def test_wrong_secret_is_rejected() -> None:
    body = dumps([_event()])
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify(generic_headers("other", body), body, CREDENTIALS, NOW)


def test_second_secret_is_accepted_during_rotation() -> None:
    body = dumps([_event()])
    credentials = GenericCredentials(secrets=("whsec_next", SECRET))
    ADAPTER.verify(generic_headers(SECRET, body), body, credentials, NOW)


def test_sender_may_sign_with_both_secrets() -> None:
    body = dumps([_event()])
    old = generic_headers("whsec_old", body)["x-banditloop-signature"]
    new = generic_headers(SECRET, body)["x-banditloop-signature"]
    header = old + "," + new.split(",", 1)[1]
    ADAPTER.verify({"x-banditloop-signature": header}, body, CREDENTIALS, NOW)


def test_stale_timestamp_is_rejected() -> None:
    body = dumps([_event()])
    headers = generic_headers(SECRET, body, timestamp=NOW_TS - 301)
    with pytest.raises(WebhookAuthError, match="tolerance"):
        ADAPTER.verify(headers, body, CREDENTIALS, NOW)


def test_timestamp_is_part_of_the_signature() -> None:
    body = dumps([_event()])
    headers = generic_headers(SECRET, body)
    digest = headers["x-banditloop-signature"].split("v1=")[1]
    forged = {"x-banditloop-signature": f"t={NOW_TS - 1},v1={digest}"}
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify(forged, body, CREDENTIALS, NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-banditloop-signature": ""},
        {"x-banditloop-signature": f"t={NOW_TS}"},
        {"x-banditloop-signature": "v1=abc"},
        {"x-banditloop-signature": "t=yesterday,v1=abc"},
    ],
)
def test_missing_or_malformed_header_is_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify(headers, b"[]", CREDENTIALS, NOW)


def test_event_without_occurred_at_takes_the_signed_time() -> None:
    body = dumps([_event(occurred_at=None)])
    event = ADAPTER.parse(body, generic_headers(SECRET, body)).events[0]
    assert event.occurred_at == NOW


def test_machine_flag_is_read() -> None:
    body = dumps([_event(type="click", machine=True)])
    assert ADAPTER.parse(body, {}).events[0].machine is True


def test_batch_with_one_poison_event_keeps_the_rest() -> None:
    body = dumps(
        [
            _event("ok-1"),
            _event("bad-type", type="purchase"),
            _event("bad-value", value="lots"),
            _event(None),
            _event("ok-2"),
        ]
    )
    batch = ADAPTER.parse(body, {})
    assert [event.event_key for event in batch.events] == ["ok-1", "ok-2"]
    assert [poison.index for poison in batch.poison] == [1, 2, 3]


def test_event_without_decision_id_parses_with_none() -> None:
    body = dumps([_event(decision_id=None)])
    assert ADAPTER.parse(body, {}).events[0].decision_ids == ()


def test_scalar_body_is_a_payload_error() -> None:
    with pytest.raises(WebhookPayloadError):
        ADAPTER.parse(b'"hello"', {})
