"""Types and helpers shared by the ESP webhook adapters.

An adapter turns one signed HTTP request from a provider into normalized
events. It is pure: no HTTP framework, no database, no settings. The route
calls ``verify`` on the raw bytes, then ``parse``, then ``flag_machine``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from service.core.storable import find_unstorable, safe_text


class EventType(StrEnum):
    """Our event vocabulary; every provider's names map onto these."""

    DELIVERED = "delivered"
    OPEN = "open"
    CLICK = "click"
    CONVERSION = "conversion"
    UNSUBSCRIBE = "unsubscribe"
    COMPLAINT = "complaint"
    BOUNCE = "bounce"


@dataclass(slots=True)
class NormalizedEvent:
    """One provider event in our terms. Never changed once built (``dataclasses.replace``
    makes a flagged copy); not declared frozen because a frozen dataclass's ``__init__``
    sets each field through ``object.__setattr__``, three times the cost, and a batch of
    1,000 events makes 1,000 of these (1.8 ms against 0.6).

    ``type`` is None when the provider event has no meaning for us (processed,
    deferred, send, ...): the pipeline counts it as ignored. ``decision_ids``
    may be empty (ESP webhooks cover the whole account). ``dispatch_id`` is
    the key that joins later Braze events to the decision ids that only the
    send event carries. ``message_id`` and ``user_agent`` feed
    ``flag_machine``.
    """

    provider: str
    event_key: str
    decision_ids: tuple[str, ...]
    type: str | None
    provider_type: str
    name: str | None
    value: float | None
    occurred_at: datetime
    machine: bool
    dispatch_id: str | None
    raw: dict[str, Any]
    message_id: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class Poison:
    """An event of an authenticated batch that could not be parsed."""

    index: int
    reason: str
    raw_text: str
    event_key: str | None = None  # the sender's event id, when it could be read


@dataclass(frozen=True)
class ControlMessage:
    """A protocol message that carries no event (SNS subscription handshakes).

    ``confirm_url`` is set only for an SNS SubscriptionConfirmation whose
    SubscribeURL is https on an SNS host: the route GETs it to confirm the
    subscription. Nothing else in a control message is ever fetched.
    """

    kind: str
    topic_arn: str | None = None
    confirm_url: str | None = None
    message: str | None = None


@dataclass
class ParsedBatch:
    events: list[NormalizedEvent] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    control: ControlMessage | None = None


class WebhookAuthError(Exception):
    """The request is not provably from the provider: answer 401.

    The message says why (missing header, stale timestamp, bad signature)
    and never contains a secret or the expected signature.
    """

    status_code = 401


class WebhookNotConfiguredError(WebhookAuthError):
    """No credential is configured for this provider (still a 401 by default)."""


class WebhookPayloadError(Exception):
    """The body cannot be parsed at all; answer the adapter's ``malformed_status``."""


class WebhookTemporaryError(Exception):
    """Verification could not run for a reason on our side (the SNS signing
    certificate could not be fetched): answer 503 so the provider retries."""

    status_code = 503


@runtime_checkable
class Adapter(Protocol):
    """What the route needs from a provider adapter.

    ``timestamp_tolerance`` is how old a signed timestamp may be; None when
    the scheme signs no timestamp (Postmark, Braze). ``malformed_status`` is
    the status for a WebhookPayloadError, chosen from the provider's retry
    rules (see docs/webhooks.md).
    """

    name: str
    timestamp_tolerance: timedelta | None
    malformed_status: int

    def verify(
        self,
        headers: Mapping[str, str],
        body: bytes,
        credentials: Any,
        now: datetime,
    ) -> None: ...

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedBatch: ...


CredentialsT = TypeVar("CredentialsT")


class CheckedAdapter(Generic[CredentialsT]):
    """The first two checks of every adapter's ``verify``, written once: the credentials are
    this adapter's own type (a wiring mistake, so a TypeError) and at least one secret is
    configured (``WebhookNotConfiguredError``, a 401). ``check`` then verifies the request
    with credentials already narrowed to the adapter's type."""

    name: str
    credentials_type: type[CredentialsT]
    timestamp_tolerance: timedelta | None

    def verify(
        self,
        headers: Mapping[str, str],
        body: bytes,
        credentials: Any,
        now: datetime,
    ) -> None:
        if not isinstance(credentials, self.credentials_type):
            raise TypeError(f"{type(self).__name__} needs {self.credentials_type.__name__}")
        require_secrets(self.secrets(credentials), self.name)
        self.check(headers, body, credentials, now)

    def check_signed_time(self, timestamp: str, field: str, now: datetime) -> None:
        """A signed unix timestamp (``field`` names it in errors) within the provider's
        tolerance: older is a replay, far in the future a forgery (WebhookAuthError)."""
        if self.timestamp_tolerance is None:
            raise TypeError(f"{type(self).__name__} signs no timestamp")
        check_timestamp(unix_header_time(timestamp, field), now, self.timestamp_tolerance)

    def secrets(self, credentials: CredentialsT) -> Sequence[str]:
        """The configured secrets (or keys); none means the provider is not configured."""
        raise NotImplementedError

    def check(
        self,
        headers: Mapping[str, str],
        body: bytes,
        credentials: CredentialsT,
        now: datetime,
    ) -> None:
        """Verify the request; raise WebhookAuthError when it is not authentic."""
        raise NotImplementedError


# Future skew allowed on signed timestamps: senders' clocks drift a little.
FUTURE_SKEW = timedelta(minutes=5)

# Decision ids are unpadded base64url tokens of at most 80 characters.
DECISION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,80}")
DECISION_KEY_PREFIX = "bl_decision"


class MalformedEventError(ValueError):
    """Raised by event parsers; the batch puts the event in ``poison``."""


def split_setting(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Turn a comma-separated setting (or a list) into a tuple of secrets."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item.strip() for item in items if item and item.strip())


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Read a header; keys should be lower-case, but tolerate any case."""
    wanted = name.lower()
    value = headers.get(wanted)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def require_header(headers: Mapping[str, str], name: str) -> str:
    value = header(headers, name)
    if value is None or not value.strip():
        raise WebhookAuthError(f"missing {name} header")
    return value.strip()


def check_timestamp(signed_at: datetime, now: datetime, tolerance: timedelta) -> None:
    """Reject a signed timestamp older than ``tolerance`` or too far ahead."""
    age = now - signed_at
    if age > tolerance:
        raise WebhookAuthError("signature timestamp is older than the accepted tolerance")
    if age < -FUTURE_SKEW:
        raise WebhookAuthError("signature timestamp is in the future")


def unix_header_time(raw: str, header_name: str) -> datetime:
    try:
        seconds = int(raw)
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise WebhookAuthError(f"{header_name} is not a unix timestamp") from None


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def any_hmac_matches(secrets: Sequence[str], message: bytes, candidates: Sequence[str]) -> bool:
    """True if a hex HMAC-SHA256 of ``message`` under any secret is a candidate.

    Every comparison runs (no early exit) so timing does not reveal which
    secret or candidate came close.
    """
    matched = False
    for secret in secrets:
        expected = hmac_sha256_hex(secret, message)
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate.strip().lower())
    return matched


def require_secrets(secrets: Sequence[str], provider: str) -> None:
    if not secrets:
        raise WebhookNotConfiguredError(f"no {provider} webhook credential is configured")


def load_json(body: bytes) -> Any:
    """Parse a whole body; a body that is not JSON is a WebhookPayloadError."""
    try:
        return json.loads(body)
    except ValueError:  # not JSON, not UTF-8, or an integer of over 4,300 digits
        raise WebhookPayloadError("body is not valid JSON") from None
    except RecursionError:  # the HTTP guard refuses deep bodies first; belt and braces
        raise WebhookPayloadError("body is nested too deep") from None


def raw_text(item: Any) -> str:
    try:
        return json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return repr(item)


def composite_key(prefix: str, *parts: object) -> str:
    """A stable de-duplication key for providers that send no event id."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8"))
    return f"{prefix}:{digest.hexdigest()}"


def decision_ids_from(*sources: Any) -> tuple[str, ...]:
    """Collect decision ids from custom-argument mappings.

    Convention: every key that starts with ``bl_decision`` (``bl_decision``,
    ``bl_decision_subject``, ``bl_decision_preheader``, ...) carries one
    decision id, or several separated by commas; a value may also be a list
    (SES tags). Ids are de-duplicated in order of appearance. A value that is
    not a decision-id token raises MalformedEventError: the event is
    dead-lettered, as a malformed decision id must be.
    """
    found: list[str] = []
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        for key, value in source.items():
            if not isinstance(key, str) or not key.lower().startswith(DECISION_KEY_PREFIX):
                continue
            for token in _tokens(value):
                if not DECISION_ID_PATTERN.fullmatch(token):
                    raise MalformedEventError(f"{key} is not a decision id token")
                if token not in found:
                    found.append(token)
    return tuple(found)


def _tokens(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        tokens: list[str] = []
        for item in value:
            tokens.extend(_tokens(item))
        return tokens
    raise MalformedEventError("decision id value is neither a string nor a list")


def parse_time(value: Any, what: str) -> datetime:
    """Unix seconds (int, float or digits) or ISO 8601, returned in UTC."""
    if isinstance(value, bool):
        raise MalformedEventError(f"{what} is not a time")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise MalformedEventError(f"{what} is out of range") from None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return parse_time(float(text), what)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise MalformedEventError(f"{what} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59:59-23:59
            raise MalformedEventError(f"{what} is out of range") from None
    raise MalformedEventError(f"{what} is missing")


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEventError(f"{what} is not an object")
    return value


def optional_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def truthy_flag(value: Any) -> bool:
    """Provider flags arrive as booleans or as strings such as "true"/"apple"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() not in {"", "false", "0", "no", "null", "none"}
    return bool(value)


def b64decode_strict(text: str) -> bytes:
    return base64.b64decode(text.strip(), validate=True)


def parse_each(
    items: Sequence[Any],
    parse_one: Callable[[Any], NormalizedEvent],
) -> ParsedBatch:
    """Parse a batch event by event; a failure poisons that event only.

    Unexpected shapes (a KeyError or TypeError deep in a parser) poison the
    event too rather than failing the whole authenticated batch.
    """
    batch = ParsedBatch()
    for index, item in enumerate(items):
        try:
            event = parse_one(item)
            check_storable(event)
            batch.events.append(event)
        except (
            MalformedEventError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            OverflowError,
        ) as exc:
            reason = (
                str(exc) if isinstance(exc, MalformedEventError) else f"unexpected shape: {exc!r}"
            )
            batch.poison.append(
                Poison(index=index, reason=safe_text(reason), raw_text=raw_text(item))
            )
    return batch


# What the event table holds for each text field (see service/models/decisions.py).
STORED_LENGTHS = {"event_key": 200, "provider_type": 64, "name": 64, "dispatch_id": 200}


def check_storable(event: NormalizedEvent) -> None:
    """Text that a database cannot store (NUL, lone surrogates) or that is longer than
    its column makes the event malformed: it is dead-lettered with the reason, and the
    rest of the signed batch is stored, instead of the whole request failing with a 500
    that the provider would retry forever."""
    texts: dict[str, Any] = {
        "event_key": event.event_key,
        "decision_ids": list(event.decision_ids),
        "provider_type": event.provider_type,
        "name": event.name,
        "dispatch_id": event.dispatch_id,
        "message_id": event.message_id,
        "user_agent": event.user_agent,
        "event": event.raw,
    }
    found = find_unstorable(texts)
    if found is not None:
        field, reason = found
        raise MalformedEventError(f"{field} {reason}")
    for name, limit in STORED_LENGTHS.items():
        value = texts[name]
        if isinstance(value, str) and len(value) > limit:
            raise MalformedEventError(f"{name} is longer than {limit} characters")
