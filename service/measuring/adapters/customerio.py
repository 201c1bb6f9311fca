"""Customer.io reporting webhooks: hex HMAC-SHA256 of ``v0:<timestamp>:<body>``.

``X-CIO-Timestamp`` carries unix seconds and ``X-CIO-Signature`` the hex
digest, keyed with the webhook signing key from the Reporting Webhooks page.
"""

from __future__ import annotations

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
    load_json,
    optional_str,
    parse_each,
    parse_time,
    require_header,
    split_setting,
)

SIGNATURE_HEADER = "x-cio-signature"
TIMESTAMP_HEADER = "x-cio-timestamp"

METRICS: dict[str, EventType | None] = {
    "drafted": None,
    "attempted": None,
    "sent": None,
    "delivered": EventType.DELIVERED,
    "opened": EventType.OPEN,
    "clicked": EventType.CLICK,
    "converted": EventType.CONVERSION,
    "unsubscribed": EventType.UNSUBSCRIBE,
    "spammed": EventType.COMPLAINT,
    "bounced": EventType.BOUNCE,
    "dropped": None,
    "failed": None,
    "undeliverable": None,
}

# Custom fields may sit at the top of ``data`` or in these nested objects.
CUSTOM_DATA_KEYS = ("message_data", "trigger_data", "trigger_event_data")


@dataclass(frozen=True)
class CustomerIoCredentials:
    """Webhook signing keys; two during a rotation."""

    signing_keys: tuple[str, ...]

    @classmethod
    def from_setting(cls, value: str | None) -> CustomerIoCredentials:
        return cls(signing_keys=split_setting(value))


class CustomerIoAdapter(CheckedAdapter[CustomerIoCredentials]):
    name = "customerio"
    credentials_type = CustomerIoCredentials
    # Customer.io retries a failed call with back-off for seven days (after an
    # hour's pause for 4xx/5xx) and documents no re-signing: 7 days plus a day
    # of margin. event_id idempotency stops replays inside the window.
    timestamp_tolerance: timedelta | None = timedelta(days=8)
    # Any non-2xx (400 included) is retried for seven days and backlogs every
    # later call behind it. An authenticated body that can never be parsed is
    # dead-lettered by the route and acknowledged with 200 so the stream moves.
    malformed_status = 200

    def secrets(self, credentials: CustomerIoCredentials) -> Sequence[str]:
        return credentials.signing_keys

    def check(
        self,
        headers: Mapping[str, str],
        body: bytes,
        credentials: CustomerIoCredentials,
        now: datetime,
    ) -> None:
        signature = require_header(headers, SIGNATURE_HEADER)
        timestamp = require_header(headers, TIMESTAMP_HEADER)
        self.check_signed_time(timestamp, TIMESTAMP_HEADER, now)
        message = b"v0:" + timestamp.encode("utf-8") + b":" + body
        if not any_hmac_matches(credentials.signing_keys, message, [signature]):
            raise WebhookAuthError("signature does not match the configured Customer.io key")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedBatch:
        payload = load_json(body)
        if isinstance(payload, dict):
            payload = [payload]
        if not isinstance(payload, list):
            raise WebhookPayloadError("Customer.io body must be a JSON object")
        return parse_each(payload, self._event)

    def _event(self, item: Any) -> NormalizedEvent:
        event = as_dict(item, "event")
        metric = optional_str(event.get("metric"))
        if metric is None:
            raise MalformedEventError("event has no metric")
        object_type = optional_str(event.get("object_type")) or "unknown"
        occurred_at = parse_time(event.get("timestamp"), "timestamp")
        data = event.get("data")
        data = data if isinstance(data, dict) else {}
        nested = [data.get(key) for key in CUSTOM_DATA_KEYS]
        ours = METRICS.get(metric)
        event_key = optional_str(event.get("event_id")) or composite_key(
            "customerio",
            object_type,
            metric,
            event.get("timestamp"),
            data.get("delivery_id"),
        )
        return NormalizedEvent(
            provider=self.name,
            event_key=event_key,
            decision_ids=decision_ids_from(data, *nested),
            type=ours.value if ours else None,
            provider_type=f"{object_type}:{metric}",
            name=None,
            value=None,
            occurred_at=occurred_at,
            machine=False,
            dispatch_id=None,
            raw=event,
            message_id=optional_str(data.get("delivery_id")),
            user_agent=optional_str(data.get("user_agent")),
        )
