from __future__ import annotations

from typing import Any

import pytest

from service.measuring.adapters import (
    PostmarkAdapter,
    PostmarkCredentials,
    WebhookAuthError,
    WebhookNotConfiguredError,
    flag_machine,
)
from tests.service.measuring.adapters.signers import DECISION_A, DECISION_B, NOW, basic_auth, dumps

ADAPTER = PostmarkAdapter()
CREDENTIALS = PostmarkCredentials(usernames=("postmark",), passwords=("s3cret-current",))


def _record(record_type: str = "Click", **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "RecordType": record_type,
        "MessageStream": "outbound",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "Recipient": "john@example.com",
        "ReceivedAt": "2026-03-02T11:59:30.9070259Z",
        "DeliveredAt": "2026-03-02T11:58:00.0000000-05:00",
        "BouncedAt": "2026-03-02T11:58:00Z",
        "ChangedAt": "2026-03-02T11:58:00Z",
        "Metadata": {"bl_decision": DECISION_A, "bl_decision_subject": DECISION_B, "a": "b"},
        "UserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15",
        "OriginalLink": "https://example.com/offer",
    }
    record.update(fields)
    return record


def test_authenticated_record_is_accepted_and_parsed() -> None:
    body = dumps(_record())
    headers = basic_auth("postmark", "s3cret-current")
    ADAPTER.verify(headers, body, CREDENTIALS, NOW)

    (event,) = ADAPTER.parse(body, headers).events

    assert event.type == "click"
    assert event.decision_ids == (DECISION_A, DECISION_B)
    assert event.occurred_at.isoformat() == "2026-03-02T11:59:30.907025+00:00"
    assert event.event_key.startswith("postmark:")
    assert event.message_id == "00000000-0000-0000-0000-000000000000/john@example.com"


def test_delivery_time_with_offset_is_converted_to_utc() -> None:
    (event,) = ADAPTER.parse(dumps(_record("Delivery")), {}).events
    assert event.type == "delivered"
    assert event.occurred_at.isoformat() == "2026-03-02T16:58:00+00:00"


def test_wrong_password_is_rejected() -> None:
    body = dumps(_record())
    with pytest.raises(WebhookAuthError, match="do not match"):
        ADAPTER.verify(basic_auth("postmark", "guess"), body, CREDENTIALS, NOW)


def test_wrong_username_is_rejected() -> None:
    body = dumps(_record())
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify(basic_auth("admin", "s3cret-current"), body, CREDENTIALS, NOW)


def test_second_password_is_accepted_during_rotation() -> None:
    credentials = PostmarkCredentials(("postmark",), ("s3cret-next", "s3cret-current"))
    ADAPTER.verify(basic_auth("postmark", "s3cret-current"), b"{}", credentials, NOW)
    ADAPTER.verify(basic_auth("postmark", "s3cret-next"), b"{}", credentials, NOW)


def test_username_and_password_pairs_rotate_together() -> None:
    credentials = PostmarkCredentials(("old-user", "new-user"), ("old-pass", "new-pass"))
    ADAPTER.verify(basic_auth("new-user", "new-pass"), b"{}", credentials, NOW)
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify(basic_auth("new-user", "old-pass"), b"{}", credentials, NOW)


def test_mismatched_rotation_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="pair"):
        PostmarkCredentials(("a", "b"), ("x", "y", "z"))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": ""},
        {"authorization": "Bearer s3cret-current"},
        {"authorization": "Basic !!!not-base64!!!"},
        {"authorization": "Basic cG9zdG1hcms="},  # "postmark" with no colon
    ],
)
def test_missing_or_broken_authorization_is_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify(headers, dumps(_record()), CREDENTIALS, NOW)


def test_unconfigured_credentials_are_rejected() -> None:
    with pytest.raises(WebhookNotConfiguredError):
        ADAPTER.verify(basic_auth("a", "b"), b"{}", PostmarkCredentials((), ()), NOW)


@pytest.mark.parametrize(
    ("record", "ours"),
    [
        (_record("Delivery"), "delivered"),
        (_record("Open", FirstOpen=True), "open"),
        (_record("Click"), "click"),
        (_record("Bounce", Type="HardBounce", ID=42), "bounce"),
        (_record("Bounce", Type="SoftBounce", ID=43), None),
        (_record("Bounce", Type="Transient", ID=44), None),
        (_record("SpamComplaint", Type="SpamComplaint", ID=45), "complaint"),
        (
            _record(
                "SubscriptionChange",
                SuppressSending=True,
                SuppressionReason="ManualSuppression",
                Origin="Recipient",
            ),
            "unsubscribe",
        ),
        (
            _record("SubscriptionChange", SuppressSending=True, SuppressionReason="HardBounce"),
            None,
        ),
        (
            _record(
                "SubscriptionChange",
                SuppressSending=False,
                SuppressionReason="ManualSuppression",
                Origin="Customer",
            ),
            None,
        ),
    ],
)
def test_record_types_map_to_ours(record: dict[str, Any], ours: str | None) -> None:
    assert ADAPTER.parse(dumps(record), {}).events[0].type == ours


def test_composite_key_is_stable_and_distinguishes_records() -> None:
    first = ADAPTER.parse(dumps(_record("Open")), {}).events[0].event_key
    again = ADAPTER.parse(dumps(_record("Open")), {}).events[0].event_key
    later = (
        ADAPTER.parse(dumps(_record("Open", ReceivedAt="2026-03-02T11:59:45Z")), {})
        .events[0]
        .event_key
    )
    click = ADAPTER.parse(dumps(_record("Click")), {}).events[0].event_key
    assert first == again
    assert len({first, later, click}) == 3


def test_apple_privacy_proxy_open_is_flagged_by_user_agent() -> None:
    events = ADAPTER.parse(dumps(_record("Open", UserAgent="Mozilla/5.0")), {}).events
    assert flag_machine(events)[0].machine is True


def test_unparseable_record_is_poison() -> None:
    batch = ADAPTER.parse(dumps({"RecordType": "Open", "ReceivedAt": "soon"}), {})
    assert batch.events == []
    assert batch.poison[0].reason == "ReceivedAt is not an ISO 8601 time"


def test_record_without_metadata_parses_with_no_decision_id() -> None:
    record = _record("Delivery")
    del record["Metadata"]
    assert ADAPTER.parse(dumps(record), {}).events[0].decision_ids == ()


def test_statuses_respect_postmarks_retry_rules() -> None:
    # 403 stops Postmark's retries: only for an authenticated, unparseable body.
    assert ADAPTER.malformed_status == 403
    assert WebhookAuthError.status_code == 401
