from __future__ import annotations

from typing import Any

import pytest

from service.measuring.adapters import (
    CustomerIoAdapter,
    CustomerIoCredentials,
    WebhookAuthError,
    WebhookPayloadError,
)
from tests.service.measuring.adapters.signers import (
    DECISION_A,
    DECISION_B,
    NOW,
    NOW_TS,
    customerio_headers,
    dumps,
)

ADAPTER = CustomerIoAdapter()
KEY = "d5c1a0a4f1f0e1e2b3c4d5e6f7a8b9c0"
CREDENTIALS = CustomerIoCredentials(signing_keys=(KEY,))


def _event(metric: str = "clicked", **data: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event_id": "01E4C4CT6YDC7Y5M7FE1GWWPQJ",
        "object_type": "email",
        "metric": metric,
        "timestamp": NOW_TS - 5,
        "data": {
            "customer_id": "42",
            "delivery_id": "RPILAgABcRhIBqSp7kiPekGBIeVh",
            "campaign_id": 23,
            "recipient": "test@example.com",
            "bl_decision": DECISION_A,
            "message_data": {"bl_decision_preheader": DECISION_B},
        },
    }
    payload["data"].update(data)
    return payload


def test_signed_event_is_accepted_and_parsed() -> None:
    body = dumps(_event())
    headers = customerio_headers(KEY, body)
    ADAPTER.verify(headers, body, CREDENTIALS, NOW)

    (event,) = ADAPTER.parse(body, headers).events

    assert event.type == "click"
    assert event.provider_type == "email:clicked"
    assert event.event_key == "01E4C4CT6YDC7Y5M7FE1GWWPQJ"
    assert event.decision_ids == (DECISION_A, DECISION_B)
    assert event.message_id == "RPILAgABcRhIBqSp7kiPekGBIeVh"


def test_altered_body_is_rejected() -> None:
    body = dumps(_event())
    headers = customerio_headers(KEY, body)
    with pytest.raises(WebhookAuthError, match="signature"):
        ADAPTER.verify(headers, body.replace(b"clicked", b"opened!"), CREDENTIALS, NOW)


def test_wrong_key_is_rejected() -> None:
    body = dumps(_event())
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify(customerio_headers("another-key", body), body, CREDENTIALS, NOW)


def test_second_key_is_accepted_during_rotation() -> None:
    body = dumps(_event())
    credentials = CustomerIoCredentials(signing_keys=("new-key", KEY))
    ADAPTER.verify(customerio_headers(KEY, body), body, credentials, NOW)


def test_timestamp_is_part_of_the_signature() -> None:
    body = dumps(_event())
    headers = customerio_headers(KEY, body)
    headers["x-cio-timestamp"] = str(NOW_TS - 1)
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify(headers, body, CREDENTIALS, NOW)


def test_stale_timestamp_is_rejected() -> None:
    body = dumps(_event())
    headers = customerio_headers(KEY, body, timestamp=NOW_TS - 8 * 86400 - 1)
    with pytest.raises(WebhookAuthError, match="tolerance"):
        ADAPTER.verify(headers, body, CREDENTIALS, NOW)


def test_retry_within_the_seven_day_horizon_is_accepted() -> None:
    body = dumps(_event())
    headers = customerio_headers(KEY, body, timestamp=NOW_TS - 7 * 86400)
    ADAPTER.verify(headers, body, CREDENTIALS, NOW)


@pytest.mark.parametrize("missing", ["x-cio-signature", "x-cio-timestamp"])
def test_missing_header_is_rejected(missing: str) -> None:
    body = dumps(_event())
    headers = customerio_headers(KEY, body)
    del headers[missing]
    with pytest.raises(WebhookAuthError, match="missing"):
        ADAPTER.verify(headers, body, CREDENTIALS, NOW)


def test_mixed_case_headers_are_read() -> None:
    body = dumps(_event())
    headers = {key.upper(): value for key, value in customerio_headers(KEY, body).items()}
    ADAPTER.verify(headers, body, CREDENTIALS, NOW)


@pytest.mark.parametrize(
    ("metric", "ours"),
    [
        ("sent", None),
        ("delivered", "delivered"),
        ("opened", "open"),
        ("clicked", "click"),
        ("converted", "conversion"),
        ("unsubscribed", "unsubscribe"),
        ("spammed", "complaint"),
        ("bounced", "bounce"),
        ("dropped", None),
        ("failed", None),
        ("attempted", None),
    ],
)
def test_metrics_map_to_ours(metric: str, ours: str | None) -> None:
    assert ADAPTER.parse(dumps(_event(metric)), {}).events[0].type == ours


def test_trigger_data_decision_ids_count_too() -> None:
    event = _event(bl_decision=None, message_data=None, trigger_data={"bl_decision": DECISION_B})
    assert ADAPTER.parse(dumps(event), {}).events[0].decision_ids == (DECISION_B,)


def test_event_without_decision_id_parses_with_none() -> None:
    event = _event(bl_decision=None, message_data={})
    assert ADAPTER.parse(dumps(event), {}).events[0].decision_ids == ()


def test_unparseable_event_is_poison() -> None:
    batch = ADAPTER.parse(dumps([_event(), {"event_id": "x", "timestamp": 1}]), {})
    assert len(batch.events) == 1
    assert batch.poison[0].index == 1
    assert "metric" in batch.poison[0].reason


def test_body_that_is_not_json_is_a_payload_error_acknowledged_with_200() -> None:
    with pytest.raises(WebhookPayloadError):
        ADAPTER.parse(b"<html>", {})
    # Customer.io backlogs every later call behind a non-2xx for seven days.
    assert ADAPTER.malformed_status == 200
