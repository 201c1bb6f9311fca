from __future__ import annotations

import json
from typing import Any

import pytest

from service.measuring.adapters import (
    BrazeAdapter,
    BrazeCredentials,
    WebhookAuthError,
    WebhookPayloadError,
    flag_machine,
)
from tests.service.measuring.adapters.signers import DECISION_A, DECISION_B, NOW, NOW_TS, dumps

ADAPTER = BrazeAdapter()
TOKEN = "braze-currents-token-0123456789abcdef"
CREDENTIALS = BrazeCredentials(tokens=(TOKEN,))
BEARER = {"authorization": f"Bearer {TOKEN}"}


def _event(
    action: str, event_id: str, time: int = NOW_TS - 60, **properties: Any
) -> dict[str, Any]:
    return {
        "event_type": f"users.messages.email.{action}",
        "id": event_id,
        "time": time,
        "user": {"user_id": "0123456789abcdef01234567", "external_user_id": "u-1"},
        "properties": {
            "campaign_id": "11234567-89ab-cdef-0123-456789abcdef",
            "dispatch_id": "12345qwert",
            "email_address": "test@test.com",
            **properties,
        },
    }


def test_authenticated_batch_is_accepted_and_parsed() -> None:
    body = dumps(
        {
            "events": [
                _event(
                    "Send",
                    "e-send",
                    message_extras={"bl_decision": DECISION_A, "bl_decision_subject": DECISION_B},
                ),
                _event("Delivery", "e-delivery"),
                _event("Open", "e-open", user_agent="Mozilla/5.0 (Windows NT 10.0)"),
            ]
        }
    )
    ADAPTER.verify(BEARER, body, CREDENTIALS, NOW)

    batch = ADAPTER.parse(body, BEARER)

    send, delivery, open_ = batch.events
    assert send.type is None
    assert send.decision_ids == (DECISION_A, DECISION_B)
    assert delivery.type == "delivered"
    assert delivery.decision_ids == ()
    assert open_.type == "open"
    # Scheduled campaigns share a dispatch_id across users: the join key is per user.
    assert {send.dispatch_id, delivery.dispatch_id, open_.dispatch_id} == {
        "12345qwert:0123456789abcdef01234567"
    }
    assert [event.event_key for event in batch.events] == ["e-send", "e-delivery", "e-open"]


def test_flat_export_shape_is_read() -> None:
    flat = {
        "event_type": "users.messages.email.Send",
        "id": "flat-1",
        "time": NOW_TS,
        "user_id": "u-flat",
        "dispatch_id": "d-flat",
        "message_extras": json.dumps({"bl_decision": DECISION_A}),
    }
    (event,) = ADAPTER.parse(dumps({"events": [flat]}), {}).events
    assert event.decision_ids == (DECISION_A,)
    assert event.dispatch_id == "d-flat:u-flat"


def test_wrong_token_is_rejected() -> None:
    with pytest.raises(WebhookAuthError, match="does not match"):
        ADAPTER.verify({"authorization": "Bearer nope"}, b"{}", CREDENTIALS, NOW)


def test_second_token_is_accepted_during_rotation() -> None:
    credentials = BrazeCredentials(tokens=("next-token", TOKEN))
    ADAPTER.verify(BEARER, b"{}", credentials, NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": TOKEN},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": "Bearer "},
    ],
)
def test_missing_or_malformed_authorization_is_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify(headers, b"{}", CREDENTIALS, NOW)


@pytest.mark.parametrize(
    ("action", "ours"),
    [
        ("Send", None),
        ("Delivery", "delivered"),
        ("Open", "open"),
        ("Click", "click"),
        ("Bounce", "bounce"),
        ("SoftBounce", None),
        ("MarkAsSpam", "complaint"),
        ("Unsubscribe", "unsubscribe"),
        ("Abort", None),
    ],
)
def test_event_types_map_to_ours(action: str, ours: str | None) -> None:
    body = dumps({"events": [_event(action, "e-1")]})
    assert ADAPTER.parse(body, {}).events[0].type == ours


def test_non_message_events_are_ignored() -> None:
    custom = {"event_type": "users.behaviors.CustomEvent", "id": "c-1", "time": NOW_TS}
    assert ADAPTER.parse(dumps({"events": [custom]}), {}).events[0].type is None


def test_machine_open_and_suspected_bot_click_are_flagged() -> None:
    body = dumps(
        {
            "events": [
                _event("Open", "o-1", machine_open="true"),
                _event("Open", "o-2", machine_open=None),
                _event("Click", "c-1", time=NOW_TS, is_suspected_bot_click=True),
                _event("Click", "c-2", time=NOW_TS, url="https://x.test/"),
            ]
        }
    )
    assert [event.machine for event in ADAPTER.parse(body, {}).events] == [
        True,
        False,
        True,
        False,
    ]


def test_scanner_click_right_after_delivery_is_flagged() -> None:
    body = dumps(
        {
            "events": [
                _event("Delivery", "d-1", time=NOW_TS - 300),
                _event("Click", "c-1", time=NOW_TS - 298),
            ]
        }
    )
    flagged = flag_machine(ADAPTER.parse(body, {}).events)
    assert [event.machine for event in flagged] == [False, True]


def test_batch_with_one_poison_event_keeps_the_rest() -> None:
    body = dumps(
        {
            "events": [
                _event("Click", "ok-1"),
                {"event_type": "users.messages.email.Click", "time": NOW_TS},
                _event("Click", "ok-2", message_extras="{not json"),
                _event("Open", "ok-3"),
            ]
        }
    )
    batch = ADAPTER.parse(body, {})
    assert [event.event_key for event in batch.events] == ["ok-1", "ok-3"]
    assert [(poison.index, poison.reason) for poison in batch.poison] == [
        (1, "event has no id"),
        (2, "message_extras is not JSON"),
    ]


def test_body_without_events_is_a_payload_error() -> None:
    with pytest.raises(WebhookPayloadError):
        ADAPTER.parse(b'{"data": []}', {})
