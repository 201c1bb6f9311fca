"""Amazon SES event publishing through an SNS HTTPS subscription.

SNS signs a canonical string built from the message's fields with the key
of an X.509 certificate it publishes at ``SigningCertURL``:
SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA. The string lists
``name\\nvalue\\n`` for, in this order,

- Notification: Message, MessageId, Subject (only if present), Timestamp,
  TopicArn, Type;
- SubscriptionConfirmation / UnsubscribeConfirmation: Message, MessageId,
  SubscribeURL, Timestamp, Token, TopicArn, Type.

The certificate URL must be https on an SNS host; certificates come from an
in-memory cache, a configured directory of PEM files, or a fetcher (the
default one uses httpx; tests and offline installs inject their own).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from service.measuring.adapters.base import (
    CheckedAdapter,
    ControlMessage,
    EventType,
    MalformedEventError,
    NormalizedEvent,
    ParsedBatch,
    WebhookAuthError,
    WebhookPayloadError,
    WebhookTemporaryError,
    as_dict,
    b64decode_strict,
    check_timestamp,
    decision_ids_from,
    header,
    load_json,
    optional_str,
    parse_each,
    parse_time,
    split_setting,
)

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
CONFIRMATION_TYPES = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})
SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

# sns.<region>.amazonaws.com, and the China partition's amazonaws.com.cn.
SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")

EVENT_TYPES: dict[str, EventType | None] = {
    "Send": None,
    "Delivery": EventType.DELIVERED,
    "Open": EventType.OPEN,
    "Click": EventType.CLICK,
    "Complaint": EventType.COMPLAINT,
    "Reject": None,
    "Rendering Failure": None,
    "DeliveryDelay": None,
}

# Where each SES event type keeps its own time (mail.timestamp is the send).
DETAIL_OBJECTS = {
    "Delivery": "delivery",
    "Open": "open",
    "Click": "click",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Subscription": "subscription",
    "DeliveryDelay": "deliveryDelay",
    "Reject": "reject",
    "Send": "send",
}

CertificateFetcher = Callable[[str], bytes]


def is_sns_url(url: str) -> bool:
    """True for an https URL on an SNS host (no userinfo, default port)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.hostname is not None
        and parts.username is None
        and parts.port in (None, 443)
        and SNS_HOST.fullmatch(parts.hostname) is not None
    )


def fetch_certificate(url: str) -> bytes:
    """Default fetcher: GET the PEM over verified TLS, no redirects."""
    import httpx  # imported here so importing the adapters stays light

    response = httpx.get(url, timeout=5.0, follow_redirects=False)
    response.raise_for_status()
    return response.content


@dataclass(frozen=True)
class SesCredentials:
    """Allowed TopicArns; optionally a directory of SNS signing-cert PEMs
    (files named like the URL's last path segment, e.g.
    ``SimpleNotificationService-<hash>.pem``) for installs without egress."""

    topic_arns: tuple[str, ...]
    certificate_dir: str | None = None

    @classmethod
    def from_setting(
        cls, topic_arns: str | None, certificate_dir: str | None = None
    ) -> SesCredentials:
        return cls(topic_arns=split_setting(topic_arns), certificate_dir=certificate_dir)


class SnsCertificateStore:
    """Signing certificates by URL: cache, then PEM directory, then fetcher."""

    def __init__(
        self, fetcher: CertificateFetcher | None = fetch_certificate, max_entries: int = 64
    ) -> None:
        self._fetcher = fetcher
        self._max_entries = max_entries
        self._cache: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def get(self, url: str, certificate_dir: str | None) -> x509.Certificate:
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None:
            return cached
        pem = self._from_dir(url, certificate_dir)
        if pem is None:
            if self._fetcher is None:
                raise WebhookAuthError("signing certificate is not available offline")
            try:
                pem = self._fetcher(url)
            except Exception:  # network, TLS, HTTP status: ours to retry, not the sender's fault
                raise WebhookTemporaryError("signing certificate could not be fetched") from None
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise WebhookAuthError("signing certificate is not a PEM X.509 certificate") from None
        with self._lock:
            if len(self._cache) >= self._max_entries:
                self._cache.pop(next(iter(self._cache)))
            self._cache[url] = certificate
        return certificate

    @staticmethod
    def _from_dir(url: str, certificate_dir: str | None) -> bytes | None:
        if not certificate_dir:
            return None
        filename = PurePosixPath(urlsplit(url).path).name
        if not filename.endswith(".pem") or filename in {".pem"}:
            return None
        path = Path(certificate_dir) / filename
        return path.read_bytes() if path.is_file() else None


def canonical_string(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signs for this message (raises MalformedEventError)."""
    message_type = message.get("Type")
    fields = CONFIRMATION_FIELDS if message_type in CONFIRMATION_TYPES else NOTIFICATION_FIELDS
    lines: list[str] = []
    for name in fields:
        value = message.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise MalformedEventError(f"SNS message lacks {name}")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


class SesAdapter(CheckedAdapter[SesCredentials]):
    name = "ses"
    credentials_type = SesCredentials
    # SNS retries an HTTPS delivery for at most 3,600 s (a hard limit) and keeps
    # the original message, Timestamp and signature: one hour plus margin for
    # throttled delivery and clock skew. MessageId idempotency stops replays.
    timestamp_tolerance: timedelta | None = timedelta(hours=2)
    malformed_status = 400

    def __init__(self, certificates: SnsCertificateStore | None = None) -> None:
        self.certificates = certificates or SnsCertificateStore()

    def secrets(self, credentials: SesCredentials) -> Sequence[str]:
        return credentials.topic_arns

    def check(
        self,
        headers: Mapping[str, str],
        body: bytes,
        credentials: SesCredentials,
        now: datetime,
    ) -> None:
        try:
            message = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WebhookAuthError("body is not an SNS message") from None
        if not isinstance(message, dict):
            raise WebhookAuthError("body is not an SNS message")
        topic_arn = message.get("TopicArn")
        if topic_arn not in credentials.topic_arns:
            raise WebhookAuthError("TopicArn is not in the allow-list")
        header_arn = header(headers, "x-amz-sns-topic-arn")
        if header_arn is not None and header_arn != topic_arn:
            raise WebhookAuthError("x-amz-sns-topic-arn header disagrees with the message")
        algorithm = SIGNATURE_HASHES.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            raise WebhookAuthError("unsupported SNS SignatureVersion")
        cert_url = message.get("SigningCertURL") or message.get("SigningCertUrl")
        if not isinstance(cert_url, str) or not is_sns_url(cert_url):
            raise WebhookAuthError("SigningCertURL is not https on an SNS host")
        signature_text = message.get("Signature")
        if not isinstance(signature_text, str):
            raise WebhookAuthError("SNS message has no Signature")
        try:
            signature = b64decode_strict(signature_text)
            signed = canonical_string(message)
        except (ValueError, MalformedEventError):
            raise WebhookAuthError(
                "SNS message is incomplete or its Signature is not base64"
            ) from None
        assert self.timestamp_tolerance is not None
        try:
            published = parse_time(message.get("Timestamp"), "Timestamp")
        except MalformedEventError:
            raise WebhookAuthError("SNS Timestamp is not a time") from None
        check_timestamp(published, now, self.timestamp_tolerance)

        certificate = self.certificates.get(cert_url, credentials.certificate_dir)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise WebhookAuthError("signing certificate is not valid now")
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise WebhookAuthError("signing certificate does not hold an RSA key")
        try:
            public_key.verify(signature, signed, padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise WebhookAuthError("SNS signature does not verify") from None

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedBatch:
        message = load_json(body)
        if not isinstance(message, dict):
            raise WebhookPayloadError("SNS body must be a JSON object")
        message_type = message.get("Type")
        if message_type in CONFIRMATION_TYPES:
            return ParsedBatch(control=_control(message))
        if message_type != "Notification":
            raise WebhookPayloadError("unknown SNS message Type")
        return parse_each([message], self._event)

    def _event(self, envelope: dict[str, Any]) -> NormalizedEvent:
        message_id = optional_str(envelope.get("MessageId"))
        if message_id is None:
            raise MalformedEventError("SNS message has no MessageId")
        text = envelope.get("Message")
        if not isinstance(text, str):
            raise MalformedEventError("SNS Message is not a string")
        try:
            event = as_dict(json.loads(text), "SES event")
        except json.JSONDecodeError:
            raise MalformedEventError("SNS Message is not a JSON SES event") from None
        # Event publishing says eventType; identity notifications notificationType.
        provider_type = optional_str(event.get("eventType")) or optional_str(
            event.get("notificationType")
        )
        if provider_type is None:
            raise MalformedEventError("SES event has no eventType")
        mail = as_dict(event.get("mail"), "mail")
        detail_name = DETAIL_OBJECTS.get(provider_type, "")
        detail = event.get(detail_name) if detail_name else None
        detail = detail if isinstance(detail, dict) else {}
        when = detail.get("timestamp") or mail.get("timestamp")
        ours, provider_type = _map(provider_type, detail)
        tags = mail.get("tags")
        return NormalizedEvent(
            provider=self.name,
            event_key=message_id,
            decision_ids=decision_ids_from(tags if isinstance(tags, dict) else None),
            type=ours.value if ours else None,
            provider_type=provider_type,
            name=None,
            value=None,
            occurred_at=parse_time(when, "timestamp"),
            machine=False,
            dispatch_id=None,
            raw=event,
            message_id=optional_str(mail.get("messageId")),
            user_agent=optional_str(detail.get("userAgent")),
        )


def _map(provider_type: str, detail: dict[str, Any]) -> tuple[EventType | None, str]:
    if provider_type == "Bounce":
        bounce_type = optional_str(detail.get("bounceType")) or "Undetermined"
        return (EventType.BOUNCE if bounce_type == "Permanent" else None), f"Bounce:{bounce_type}"
    if provider_type == "Complaint" and detail.get("complaintFeedbackType") == "not-spam":
        return None, "Complaint:not-spam"
    if provider_type == "Subscription":
        preferences = detail.get("newTopicPreferences")
        if isinstance(preferences, dict) and preferences.get("unsubscribeAll") is True:
            return EventType.UNSUBSCRIBE, provider_type
        return None, provider_type
    return EVENT_TYPES.get(provider_type), provider_type


def _control(message: dict[str, Any]) -> ControlMessage:
    kind = (
        "subscription_confirmation"
        if message.get("Type") == "SubscriptionConfirmation"
        else "unsubscribe_confirmation"
    )
    url = message.get("SubscribeURL")
    confirm_url = (
        url
        if kind == "subscription_confirmation" and isinstance(url, str) and is_sns_url(url)
        else None
    )
    return ControlMessage(
        kind=kind,
        topic_arn=optional_str(message.get("TopicArn")),
        confirm_url=confirm_url,
        message=optional_str(message.get("Message")),
    )
