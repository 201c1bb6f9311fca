"""Postmark webhooks: HTTP basic auth, no signature, one record per POST.

Postmark puts the credentials in the webhook URL
(``https://user:pass@host/v1/webhooks/postmark``) and sends them as an
``Authorization: Basic`` header. Records carry no event id, so the event
key is a hash of what identifies the record.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.measuring.adapters.base import (
    CheckedAdapter,
    EventType,
    MalformedEventError,
    NormalizedEvent,
    ParsedBatch,
    WebhookAuthError,
    WebhookPayloadError,
    as_dict,
    composite_key,
    decision_ids_from,
    header,
    load_json,
    optional_str,
    parse_each,
    parse_time,
    split_setting,
)

RECORD_TYPES: dict[str, EventType | None] = {
    "Delivery": EventType.DELIVERED,
    "Open": EventType.OPEN,
    "Click": EventType.CLICK,
    "SpamComplaint": EventType.COMPLAINT,
}

# Bounce records: only these Types are a bounce in our sense; soft bounces,
# auto-responders, DNS hiccups and the like are ignored.
HARD_BOUNCE_TYPES = frozenset({"HardBounce", "BadEmailAddress"})

# Where each record type keeps the time it happened.
TIME_FIELDS = {
    "Delivery": "DeliveredAt",
    "Open": "ReceivedAt",
    "Click": "ReceivedAt",
    "Bounce": "BouncedAt",
    "SpamComplaint": "BouncedAt",
    "SubscriptionChange": "ChangedAt",
}


@dataclass(frozen=True)
class PostmarkCredentials:
    """Basic-auth pairs. One username with two passwords rotates the password;
    equal-length lists pair up position by position."""

    usernames: tuple[str, ...]
    passwords: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.usernames) > 1 and len(self.usernames) != len(self.passwords):
            raise ValueError("Postmark usernames and passwords do not pair up")

    @classmethod
    def from_settings(cls, usernames: str | None, passwords: str | None) -> PostmarkCredentials:
        return cls(usernames=split_setting(usernames), passwords=split_setting(passwords))

    def pairs(self) -> list[tuple[str, str]]:
        if not self.usernames or not self.passwords:
            return []
        if len(self.usernames) == 1:
            return [(self.usernames[0], password) for password in self.passwords]
        return list(zip(self.usernames, self.passwords, strict=True))


class PostmarkAdapter(CheckedAdapter[PostmarkCredentials]):
    name = "postmark"
    credentials_type = PostmarkCredentials
    # Basic auth signs no timestamp, so nothing ages out. (Postmark retries
    # about 10.5 hours; idempotency on the composite key stops replays.)
    timestamp_tolerance: timedelta | None = None
    # Postmark stops retrying on 403: used only for an authenticated body that
    # can never be parsed. Transient faults must answer 5xx, never 403; bad
    # credentials answer 401, which Postmark retries (a rotation slip heals).
    malformed_status = 403

    def secrets(self, credentials: PostmarkCredentials) -> Sequence[str]:
        return [password for _, password in credentials.pairs()]

    def check(
        self,
        headers: Mapping[str, str],
        body: bytes,
        credentials: PostmarkCredentials,
        now: datetime,
    ) -> None:
        pairs = credentials.pairs()
        authorization = header(headers, "authorization")
        if not authorization or not authorization.strip():
            raise WebhookAuthError("missing Authorization header")
        scheme, _, encoded = authorization.strip().partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise WebhookAuthError("Authorization is not HTTP basic auth")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise WebhookAuthError("basic auth credentials are not valid base64") from None
        username, separator, password = decoded.partition(":")
        if not separator:
            raise WebhookAuthError("basic auth credentials lack a password")
        matched = False
        for expected_user, expected_password in pairs:
            user_ok = hmac.compare_digest(username.encode(), expected_user.encode())
            password_ok = hmac.compare_digest(password.encode(), expected_password.encode())
            matched |= user_ok and password_ok
        if not matched:
            raise WebhookAuthError("basic auth credentials do not match")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedBatch:
        payload = load_json(body)
        if isinstance(payload, dict):
            payload = [payload]
        if not isinstance(payload, list):
            raise WebhookPayloadError("Postmark body must be a JSON object")
        return parse_each(payload, self._event)

    def _event(self, item: Any) -> NormalizedEvent:
        record = as_dict(item, "record")
        record_type = optional_str(record.get("RecordType"))
        if record_type is None:
            raise MalformedEventError("record has no RecordType")
        time_field = TIME_FIELDS.get(record_type)
        if time_field is None:
            # Unknown record types still need a time; take any we recognise.
            time_field = next((f for f in TIME_FIELDS.values() if f in record), "ReceivedAt")
        occurred_text = record.get(time_field)
        occurred_at = parse_time(occurred_text, time_field)
        message_id = optional_str(record.get("MessageID")) or optional_str(record.get("MessageId"))
        ours, provider_type = _map(record_type, record)
        discriminator = (
            record.get("ID")
            if record_type in ("Bounce", "SpamComplaint")
            else record.get("OriginalLink")
            if record_type == "Click"
            else record.get("Recipient") or record.get("Email")
        )
        event_key = composite_key("postmark", record_type, message_id, occurred_text, discriminator)
        recipient = optional_str(record.get("Recipient")) or optional_str(record.get("Email"))
        return NormalizedEvent(
            provider=self.name,
            event_key=event_key,
            decision_ids=decision_ids_from(record.get("Metadata")),
            type=ours.value if ours else None,
            provider_type=provider_type,
            name=None,
            value=None,
            occurred_at=occurred_at,
            machine=False,
            dispatch_id=None,
            raw=record,
            message_id=f"{message_id}/{recipient}" if message_id and recipient else message_id,
            user_agent=optional_str(record.get("UserAgent")),
        )


def _map(record_type: str, record: dict[str, Any]) -> tuple[EventType | None, str]:
    if record_type == "Bounce":
        bounce_type = optional_str(record.get("Type")) or "Unknown"
        provider_type = f"Bounce:{bounce_type}"
        if bounce_type in HARD_BOUNCE_TYPES:
            return EventType.BOUNCE, provider_type
        if bounce_type == "SpamComplaint":
            return EventType.COMPLAINT, provider_type
        if bounce_type == "Unsubscribe":
            return EventType.UNSUBSCRIBE, provider_type
        return None, provider_type
    if record_type == "SubscriptionChange":
        reason = optional_str(record.get("SuppressionReason")) or "Unknown"
        provider_type = f"SubscriptionChange:{reason}"
        # Hard bounces and complaints also arrive as their own records; only a
        # recipient's own suppression is an unsubscribe.
        unsubscribed = (
            record.get("SuppressSending") is True
            and reason == "ManualSuppression"
            and record.get("Origin") == "Recipient"
        )
        return (EventType.UNSUBSCRIBE if unsubscribed else None), provider_type
    return RECORD_TYPES.get(record_type), record_type
