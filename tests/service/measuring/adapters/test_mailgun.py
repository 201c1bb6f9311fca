from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from service.measuring.adapters import (
    MailgunAdapter,
    MailgunCredentials,
    WebhookAuthError,
    WebhookPayloadError,
    flag_machine,
)
from tests.service.measuring.adapters.signers import (
    DECISION_A,
    DECISION_B,
    NOW,
    NOW_TS,
    dumps,
    mailgun_body,
)

ADAPTER = MailgunAdapter()
KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
OLD_KEY = "key-previous-signing-key-still-valid"
CREDENTIALS = MailgunCredentials(signing_keys=(KEY,))


def _event_data(event: str = "clicked", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "CPgfbmQMTCKtHW6uIWtuVe",
        "timestamp": NOW_TS - 30.5,
        "event": event,
        "recipient": "alice@example.com",
        "message": {"headers": {"message-id": "20130503182626.18666.16540@example.com"}},
        "user-variables": {"bl_decision": DECISION_A, "bl_decision_preheader": DECISION_B},
    }
    data.update(fields)
    return data


def test_signed_event_is_accepted_and_parsed() -> None:
    body = mailgun_body(_event_data(), KEY)
    ADAPTER.verify({}, body, CREDENTIALS, NOW)

    batch = ADAPTER.parse(body, {})

    (event,) = batch.events
    assert event.type == "click"
    assert event.provider_type == "clicked"
    assert event.decision_ids == (DECISION_A, DECISION_B)
    assert event.event_key == "CPgfbmQMTCKtHW6uIWtuVe@2026-03-02"
    assert event.occurred_at == NOW - timedelta(seconds=30.5)
    assert event.message_id == "20130503182626.18666.16540@example.com/alice@example.com"


def test_altered_body_is_rejected() -> None:
    body = mailgun_body(_event_data(), KEY)
    payload = json.loads(body)
    payload["signature"]["token"] = payload["signature"]["token"][:-1] + "x"
    with pytest.raises(WebhookAuthError, match="signature"):
        ADAPTER.verify({}, dumps(payload), CREDENTIALS, NOW)


def test_altered_timestamp_is_rejected() -> None:
    payload = json.loads(mailgun_body(_event_data(), KEY))
    payload["signature"]["timestamp"] = str(NOW_TS - 5)
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify({}, dumps(payload), CREDENTIALS, NOW)


def test_wrong_key_is_rejected() -> None:
    body = mailgun_body(_event_data(), "key-someone-else")
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify({}, body, CREDENTIALS, NOW)


def test_second_key_is_accepted_during_rotation() -> None:
    body = mailgun_body(_event_data(), OLD_KEY)
    ADAPTER.verify({}, body, MailgunCredentials(signing_keys=(KEY, OLD_KEY)), NOW)


def test_parent_signature_of_a_subaccount_is_accepted() -> None:
    payload = json.loads(mailgun_body(_event_data(), "key-parent-account"))
    payload["signature"]["parent-signature"] = payload["signature"]["signature"]
    payload["signature"]["signature"] = "0" * 64
    ADAPTER.verify({}, dumps(payload), MailgunCredentials(("key-parent-account",)), NOW)


def test_stale_timestamp_is_rejected() -> None:
    body = mailgun_body(_event_data(), KEY, timestamp=NOW_TS - 9 * 3600 - 1)
    with pytest.raises(WebhookAuthError, match="tolerance"):
        ADAPTER.verify({}, body, CREDENTIALS, NOW)


def test_retry_within_the_8_hour_horizon_is_accepted() -> None:
    body = mailgun_body(_event_data(), KEY, timestamp=NOW_TS - 8 * 3600)
    ADAPTER.verify({}, body, CREDENTIALS, NOW)


@pytest.mark.parametrize("field", ["timestamp", "token", "signature"])
def test_missing_signature_field_is_rejected(field: str) -> None:
    payload = json.loads(mailgun_body(_event_data(), KEY))
    del payload["signature"][field]
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify({}, dumps(payload), CREDENTIALS, NOW)


def test_missing_signature_object_is_rejected() -> None:
    with pytest.raises(WebhookAuthError, match="signature"):
        ADAPTER.verify({}, dumps({"event-data": _event_data()}), CREDENTIALS, NOW)


@pytest.mark.parametrize(
    ("provider_event", "extra", "ours"),
    [
        ("accepted", {}, None),
        ("delivered", {}, "delivered"),
        ("opened", {}, "open"),
        ("clicked", {}, "click"),
        ("unsubscribed", {}, "unsubscribe"),
        ("complained", {}, "complaint"),
        ("failed", {"severity": "permanent"}, "bounce"),
        ("failed", {"severity": "temporary"}, None),
        ("rejected", {}, None),
    ],
)
def test_event_names_map_to_ours(
    provider_event: str, extra: dict[str, Any], ours: str | None
) -> None:
    body = mailgun_body(_event_data(provider_event, **extra), KEY)
    assert ADAPTER.parse(body, {}).events[0].type == ours


@pytest.mark.parametrize(("bot", "machine"), [("apple", True), ("generic", True), ("", False)])
def test_bot_detection_flags_machine_opens(bot: str, machine: bool) -> None:
    client_info = {"user-agent": "Mozilla/5.0 (Windows NT 10.0)", "bot": bot}
    body = mailgun_body(_event_data("opened", **{"client-info": client_info}), KEY)
    assert ADAPTER.parse(body, {}).events[0].machine is machine


def test_scanner_click_right_after_delivery_is_flagged() -> None:
    delivered = ADAPTER.parse(
        mailgun_body(_event_data("delivered", id="d1", timestamp=NOW_TS - 100), KEY), {}
    ).events
    click = ADAPTER.parse(
        mailgun_body(_event_data("clicked", id="c1", timestamp=NOW_TS - 97), KEY), {}
    ).events
    late_click = ADAPTER.parse(
        mailgun_body(_event_data("clicked", id="c2", timestamp=NOW_TS), KEY), {}
    ).events
    flagged = flag_machine(delivered + click + late_click)
    assert [event.machine for event in flagged] == [False, True, False]


def test_unparseable_event_data_is_poison() -> None:
    body = mailgun_body({"event": "clicked", "timestamp": "not a time"}, KEY)
    ADAPTER.verify({}, body, CREDENTIALS, NOW)
    batch = ADAPTER.parse(body, {})
    assert batch.events == []
    assert batch.poison[0].index == 0
    assert "timestamp" in batch.poison[0].reason


def test_event_without_decision_id_parses_with_none() -> None:
    body = mailgun_body(_event_data("clicked", **{"user-variables": {"order": "42"}}), KEY)
    assert ADAPTER.parse(body, {}).events[0].decision_ids == ()


def test_non_object_body_is_a_payload_error() -> None:
    with pytest.raises(WebhookPayloadError):
        ADAPTER.parse(b"[1, 2]", {})


def test_malformed_status_is_mailguns_do_not_retry() -> None:
    assert ADAPTER.malformed_status == 406
