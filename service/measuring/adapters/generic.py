"""The generic webhook, for senders without a supported ESP.

Scheme (Stripe-like): header ``X-Banditloop-Signature: t=<unix>,v1=<hex>``
where ``hex = HMAC-SHA256(secret, f"{t}.{raw body}")``. Several ``v1=``
entries may be sent (a sender rotating its secret signs with both); any one
matching any configured secret is accepted. ``t`` must be within five
minutes of now: the sender signs every attempt afresh.

Body: a JSON list of events, or ``{"events": [...]}``. Each event is
``{event_id, decision_id | decision_ids, type, name?, value?, occurred_at?,
machine?, message_id?, user_agent?}`` with ``type`` in our vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    decision_ids_from,
    header,
    hmac_sha256_hex,
    load_json,
    optional_str,
    parse_each,
    parse_time,
    require_header,
    split_setting,
)

SIGNATURE_HEADER = "x-banditloop-signature"
OUR_TYPES = frozenset(member.value for member in EventType)


@dataclass(frozen=True)
class GenericCredentials:
    """Shared secrets; two during a rotation."""

    secrets: tuple[str, ...]

    @classmethod
    def from_setting(cls, value: str | None) -> GenericCredentials:
        return cls(secrets=split_setting(value))


def parse_signature_header(value: str) -> tuple[str, list[str]]:
    """Split ``t=...,v1=...[,v1=...]`` into the timestamp and the signatures."""
    timestamp: str | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        if key == "t":
            timestamp = item.strip()
        elif key == "v1" and item.strip():
            signatures.append(item.strip())
    if not timestamp or not signatures:
        raise WebhookAuthError("signature header needs t= and v1=")
    return timestamp, signatures


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value a sender attaches (also used by tests and clients)."""
    digest = hmac_sha256_hex(secret, str(timestamp).encode("ascii") + b"." + body)
    return f"t={timestamp},v1={digest}"


class GenericAdapter(CheckedAdapter[GenericCredentials]):
    name = "generic"
    credentials_type = GenericCredentials
    # Our own contract: senders sign each attempt, so five minutes suffices.
    timestamp_tolerance: timedelta | None = timedelta(minutes=5)
    malformed_status = 400

    def secrets(self, credentials: GenericCredentials) -> Sequence[str]:
        return credentials.secrets

    def check(
        self,
        headers: Mapping[str, str],
        body: bytes,
        credentials: GenericCredentials,
        now: datetime,
    ) -> None:
        timestamp, signatures = parse_signature_header(require_header(headers, SIGNATURE_HEADER))
        self.check_signed_time(timestamp, "t", now)
        message = timestamp.encode("utf-8") + b"." + body
        if not any_hmac_matches(credentials.secrets, message, signatures):
            raise WebhookAuthError("signature does not match the configured secret")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedBatch:
        payload = load_json(body)
        if isinstance(payload, dict):
            payload = payload.get("events")
        if not isinstance(payload, list):
            raise WebhookPayloadError('body must be a JSON list or {"events": [...]}')
        default_time = _signed_time(headers)
        return parse_each(payload, lambda item: self._event(item, default_time))

    def _event(self, item: Any, default_time: datetime) -> NormalizedEvent:
        event = as_dict(item, "event")
        event_id = optional_str(event.get("event_id"))
        if event_id is None:
            raise MalformedEventError("event_id is required")
        event_type = event.get("type")
        if event_type not in OUR_TYPES:
            raise MalformedEventError(f"type must be one of {sorted(OUR_TYPES)}")
        decision_ids = decision_ids_from(
            {"bl_decision": event.get("decision_id")},
            {"bl_decision": event.get("decision_ids")},
        )
        value = event.get("value")
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise MalformedEventError("value must be a finite number")
        machine = event.get("machine", False)
        if not isinstance(machine, bool):
            raise MalformedEventError("machine must be a boolean")
        occurred = event.get("occurred_at")
        return NormalizedEvent(
            provider=self.name,
            event_key=event_id,
            decision_ids=decision_ids,
            type=event_type,
            provider_type=event_type,
            name=optional_str(event.get("name")),
            value=float(value) if value is not None else None,
            occurred_at=parse_time(occurred, "occurred_at")
            if occurred is not None
            else default_time,
            machine=machine,
            dispatch_id=None,
            raw=event,
            message_id=optional_str(event.get("message_id")),
            user_agent=optional_str(event.get("user_agent")),
        )


def _signed_time(headers: Mapping[str, str]) -> datetime:
    """An event without occurred_at happened when it was signed."""
    value = header(headers, SIGNATURE_HEADER)
    if value:
        try:
            timestamp, _ = parse_signature_header(value)
            return datetime.fromtimestamp(int(timestamp), tz=UTC)
        except (WebhookAuthError, ValueError, OverflowError, OSError):
            pass
    return datetime.now(UTC)
