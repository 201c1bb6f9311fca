"""Mailgun webhooks: HMAC-SHA256(signing key, timestamp + token) inside the body.

Each POST is one JSON object ``{"signature": {timestamp, token, signature},
"event-data": {...}}``. Subaccount events also carry ``parent-signature``
(the primary account's), which is accepted as well.
"""

from __future__ import annotations

import json
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
    any_hmac_matches,
    as_dict,
    composite_key,
    decision_ids_from,
    optional_str,
    parse_each,
    parse_time,
    split_setting,
    truthy_flag,
)

EVENT_TYPES: dict[str, EventType | None] = {
    "accepted": None,
    "rejected": None,
    "delivered": EventType.DELIVERED,
    "opened": EventType.OPEN,
    "clicked": EventType.CLICK,
    "unsubscribed": EventType.UNSUBSCRIBE,
    "complained": EventType.COMPLAINT,
    "stored": None,
    "list_member_uploaded": None,
}


@dataclass(frozen=True)
class MailgunCredentials:
    """HTTP webhook signing keys; two during a rotation."""

    signing_keys: tuple[str, ...]

    @classmethod
    def from_setting(cls, value: str | None) -> MailgunCredentials:
        return cls(signing_keys=split_setting(value))


class MailgunAdapter(CheckedAdapter[MailgunCredentials]):
    name = "mailgun"
    credentials_type = MailgunCredentials
    # Mailgun retries for 8 hours (5 min ... 4 h back-off) and documents no
    # re-signing: 8 h plus an hour of margin. Replays inside the window are
    # stopped by event-id idempotency.
    timestamp_tolerance: timedelta | None = timedelta(hours=9)
    # 406 is Mailgun's "rejected, do not retry". Only a body that passed the
    # signature check and still cannot be parsed gets it: it will never parse.
    # Transient faults must answer 5xx (retried), never 406.
    malformed_status = 406

    def secrets(self, credentials: MailgunCredentials) -> Sequence[str]:
        return credentials.signing_keys

    def check(
        self,
        headers: Mapping[str, str],
        body: bytes,
        credentials: MailgunCredentials,
        now: datetime,
    ) -> None:
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WebhookAuthError("body is not JSON, so it carries no Mailgun signature") from None
        signature = payload.get("signature") if isinstance(payload, dict) else None
        if not isinstance(signature, dict):
            raise WebhookAuthError("body has no signature object")
        timestamp = signature.get("timestamp")
        token = signature.get("token")
        if isinstance(timestamp, int) and not isinstance(timestamp, bool):
            timestamp = str(timestamp)
        if not isinstance(timestamp, str) or not isinstance(token, str) or not token:
            raise WebhookAuthError("signature object lacks timestamp or token")
        candidates = [
            value
            for value in (signature.get("signature"), signature.get("parent-signature"))
            if isinstance(value, str) and value
        ]
        if not candidates:
            raise WebhookAuthError("signature object lacks a signature")
        self.check_signed_time(timestamp, "signature.timestamp", now)
        message = (timestamp + token).encode("utf-8")
        if not any_hmac_matches(credentials.signing_keys, message, candidates):
            raise WebhookAuthError("signature does not match the configured Mailgun signing key")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedBatch:
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WebhookPayloadError("body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise WebhookPayloadError("Mailgun body must be a JSON object")
        return parse_each([payload.get("event-data")], self._event)

    def _event(self, item: Any) -> NormalizedEvent:
        event = as_dict(item, "event-data")
        provider_type = optional_str(event.get("event"))
        if provider_type is None:
            raise MalformedEventError("event-data has no 'event' name")
        occurred_at = parse_time(event.get("timestamp"), "event-data.timestamp")
        ours = EVENT_TYPES.get(provider_type)
        if provider_type == "failed":
            severity = optional_str(event.get("severity")) or "unknown"
            ours = EventType.BOUNCE if severity == "permanent" else None
            provider_type = f"failed:{severity}"
        event_id = optional_str(event.get("id"))
        # Mailgun guarantees event ids unique within a day only, so the event's
        # UTC date completes the key (retries carry the same event-data).
        event_key = (
            f"{event_id}@{occurred_at.date().isoformat()}"
            if event_id
            else composite_key("mailgun", provider_type, event.get("timestamp"), _message_id(event))
        )
        client_info = event.get("client-info")
        client_info = client_info if isinstance(client_info, dict) else {}
        machine = ours in (EventType.OPEN, EventType.CLICK) and truthy_flag(client_info.get("bot"))
        return NormalizedEvent(
            provider=self.name,
            event_key=event_key,
            decision_ids=decision_ids_from(event.get("user-variables")),
            type=ours.value if ours else None,
            provider_type=provider_type,
            name=None,
            value=None,
            occurred_at=occurred_at,
            machine=machine,
            dispatch_id=None,
            raw=event,
            message_id=_message_id(event),
            user_agent=optional_str(client_info.get("user-agent")),
        )


def _message_id(event: dict[str, Any]) -> str | None:
    message = event.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    message_id = optional_str(headers.get("message-id")) if isinstance(headers, dict) else None
    recipient = optional_str(event.get("recipient"))
    if message_id and recipient:
        return f"{message_id}/{recipient}"
    return message_id
