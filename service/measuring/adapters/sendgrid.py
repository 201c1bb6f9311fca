"""SendGrid Event Webhook: ECDSA P-256 / SHA-256 over timestamp + raw body.

SendGrid signs ``X-Twilio-Email-Event-Webhook-Timestamp`` bytes followed by
the raw body with its private key and sends the base64 DER signature in
``X-Twilio-Email-Event-Webhook-Signature``. The verification key shown in
Mail Settings is a base64 DER SubjectPublicKeyInfo.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.measuring.adapters.base import (
    CheckedAdapter,
    EventType,
    MalformedEventError,
    NormalizedEvent,
    ParsedBatch,
    WebhookAuthError,
    WebhookPayloadError,
    as_dict,
    b64decode_strict,
    composite_key,
    decision_ids_from,
    load_json,
    optional_str,
    parse_each,
    parse_time,
    require_header,
    split_setting,
    truthy_flag,
)

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"

EVENT_TYPES: dict[str, EventType | None] = {
    "processed": None,
    "deferred": None,
    "dropped": None,
    "delivered": EventType.DELIVERED,
    "bounce": EventType.BOUNCE,
    "open": EventType.OPEN,
    "click": EventType.CLICK,
    "spamreport": EventType.COMPLAINT,
    "unsubscribe": EventType.UNSUBSCRIBE,
    "group_unsubscribe": EventType.UNSUBSCRIBE,
    "group_resubscribe": None,
}


@dataclass(frozen=True)
class SendGridCredentials:
    """Verification keys (base64 DER, or PEM); two during a rotation."""

    public_keys: tuple[str, ...]

    @classmethod
    def from_setting(cls, value: str | None) -> SendGridCredentials:
        return cls(public_keys=split_setting(value))


@functools.lru_cache(maxsize=16)
def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """Load a SendGrid verification key; must be an EC P-256 public key."""
    stripped = text.strip()
    try:
        if stripped.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(stripped.encode("ascii"))
        else:
            key = serialization.load_der_public_key(b64decode_strict(stripped))
    except ValueError:
        raise ValueError(
            "SendGrid verification key is not a base64 DER or PEM public key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("SendGrid verification key is not an EC P-256 key")
    return key


class SendGridAdapter(CheckedAdapter[SendGridCredentials]):
    name = "sendgrid"
    credentials_type = SendGridCredentials
    # SendGrid retries a failed POST at increasing intervals for up to 24 hours
    # after the event and documents no re-signing, so a retry may carry the
    # first attempt's timestamp: 24 h plus an hour of margin. Replays inside the
    # window are stopped by sg_event_id idempotency.
    timestamp_tolerance: timedelta | None = timedelta(hours=25)
    # A non-2xx is retried for 24 hours and blocks nothing else: 400 is safe.
    malformed_status = 400

    def secrets(self, credentials: SendGridCredentials) -> Sequence[str]:
        return credentials.public_keys

    def check(
        self,
        headers: Mapping[str, str],
        body: bytes,
        credentials: SendGridCredentials,
        now: datetime,
    ) -> None:
        signature_text = require_header(headers, SIGNATURE_HEADER)
        timestamp = require_header(headers, TIMESTAMP_HEADER)
        self.check_signed_time(timestamp, TIMESTAMP_HEADER, now)
        try:
            signature = b64decode_strict(signature_text)
        except ValueError:
            raise WebhookAuthError("signature header is not base64") from None
        signed = timestamp.encode("utf-8") + body
        verified = False
        for key_text in credentials.public_keys:
            try:
                key = load_public_key(key_text)
            except ValueError:
                continue
            try:
                key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
                verified = True
            except InvalidSignature:
                pass
        if not verified:
            raise WebhookAuthError("signature does not verify with the configured SendGrid key")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedBatch:
        payload = load_json(body)
        if not isinstance(payload, list):
            raise WebhookPayloadError("SendGrid body must be a JSON array of events")
        return parse_each(payload, self._event)

    def _event(self, item: Any) -> NormalizedEvent:
        event = as_dict(item, "event")
        provider_type = optional_str(event.get("event"))
        if provider_type is None:
            raise MalformedEventError("event has no 'event' name")
        occurred_at = parse_time(event.get("timestamp"), "timestamp")
        ours = EVENT_TYPES.get(provider_type)
        # A "bounce" with type "blocked" is a temporary rejection, not a bounce.
        if provider_type == "bounce" and event.get("type") == "blocked":
            ours = None
            provider_type = "bounce:blocked"
        event_key = optional_str(event.get("sg_event_id")) or composite_key(
            "sendgrid",
            provider_type,
            event.get("sg_message_id"),
            event.get("timestamp"),
            event.get("url"),
        )
        return NormalizedEvent(
            provider=self.name,
            event_key=event_key,
            decision_ids=decision_ids_from(event),
            type=ours.value if ours else None,
            provider_type=provider_type,
            name=None,
            value=None,
            occurred_at=occurred_at,
            machine=provider_type == "open" and truthy_flag(event.get("sg_machine_open")),
            dispatch_id=None,
            raw=event,
            message_id=_message_id(event),
            user_agent=optional_str(event.get("useragent")),
        )


def _message_id(event: dict[str, Any]) -> str | None:
    # sg_message_id is "<X-Message-Id>.filter..." (or ".recvd-..."): the prefix
    # names the send across delivered/open/click; one send can go to several
    # recipients, so the recipient completes the key.
    message_id = optional_str(event.get("sg_message_id")) or optional_str(event.get("smtp-id"))
    if not message_id:
        return None
    prefix = re.split(r"\.(?:filter|recvd)", message_id, maxsplit=1)[0]
    recipient = optional_str(event.get("email"))
    return f"{prefix}/{recipient}" if recipient else prefix
