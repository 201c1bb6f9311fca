"""Braze Currents, Custom HTTP connector: bearer token, batched events.

Braze POSTs ``{"events": [event, ...]}`` (up to 100 by default) with
``Authorization: Bearer <token>``. An event is ``{"event_type", "id", "time",
"user": {...}, "properties": {...}}``; the flat shape of the storage exports
(fields at the top level) is read as well.

Decision ids arrive in ``message_extras`` on Send events only. Later events
(Delivery, Open, Click, ...) carry the dispatch, so every event exposes
``dispatch_id`` and the pipeline joins through it. Braze gives a scheduled
campaign one dispatch_id for all its recipients, so the join key is
``<dispatch_id>:<user_id>``, which is also unique for triggered sends.
"""

from __future__ import annotations

import hmac
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
    as_dict,
    decision_ids_from,
    header,
    load_json,
    optional_str,
    parse_each,
    parse_time,
    split_setting,
    truthy_flag,
)

MESSAGE_EVENT_PREFIX = "users.messages."

# The action at the end of users.messages.<channel>.<Action>.
ACTIONS: dict[str, EventType | None] = {
    "Send": None,
    "Delivery": EventType.DELIVERED,
    "Open": EventType.OPEN,
    "Click": EventType.CLICK,
    "ShortLinkClick": EventType.CLICK,
    "Bounce": EventType.BOUNCE,
    "SoftBounce": None,
    "MarkAsSpam": EventType.COMPLAINT,
    "SpamReport": EventType.COMPLAINT,
    "Unsubscribe": EventType.UNSUBSCRIBE,
    "Abort": None,
}


@dataclass(frozen=True)
class BrazeCredentials:
    """Bearer tokens entered in the Current; two during a rotation."""

    tokens: tuple[str, ...]

    @classmethod
    def from_setting(cls, value: str | None) -> BrazeCredentials:
        return cls(tokens=split_setting(value))


class BrazeAdapter(CheckedAdapter[BrazeCredentials]):
    name = "braze"
    credentials_type = BrazeCredentials
    # A bearer token signs no timestamp. (Braze retries for up to five days,
    # then disables the Current; the event id stops replays.)
    timestamp_tolerance: timedelta | None = None
    # Braze keeps retrying failures and disables the integration after five
    # days of them, dropping later events: an authenticated body that can
    # never be parsed is dead-lettered by the route and acknowledged with 200.
    malformed_status = 200

    def secrets(self, credentials: BrazeCredentials) -> Sequence[str]:
        return credentials.tokens

    def check(
        self,
        headers: Mapping[str, str],
        body: bytes,
        credentials: BrazeCredentials,
        now: datetime,
    ) -> None:
        authorization = header(headers, "authorization")
        if not authorization or not authorization.strip():
            raise WebhookAuthError("missing Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise WebhookAuthError("Authorization is not a bearer token")
        presented = token.strip().encode("utf-8")
        matched = False
        for expected in credentials.tokens:
            matched |= hmac.compare_digest(presented, expected.encode("utf-8"))
        if not matched:
            raise WebhookAuthError("bearer token does not match")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedBatch:
        payload = load_json(body)
        if isinstance(payload, dict):
            payload = payload.get("events")
        if not isinstance(payload, list):
            raise WebhookPayloadError('Braze body must be {"events": [...]}')
        return parse_each(payload, self._event)

    def _event(self, item: Any) -> NormalizedEvent:
        event = as_dict(item, "event")
        event_type = optional_str(event.get("event_type")) or optional_str(event.get("type"))
        if event_type is None:
            raise MalformedEventError("event has no event_type")
        event_id = optional_str(event.get("id"))
        if event_id is None:
            raise MalformedEventError("event has no id")
        properties = event.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        user = event.get("user")
        user = user if isinstance(user, dict) else {}

        def field(name: str) -> Any:
            value = properties.get(name)
            return value if value is not None else event.get(name)

        ours: EventType | None = None
        if event_type.startswith(MESSAGE_EVENT_PREFIX):
            ours = ACTIONS.get(event_type.rsplit(".", 1)[-1])
        dispatch = optional_str(field("dispatch_id"))
        user_id = optional_str(user.get("user_id")) or optional_str(event.get("user_id"))
        join_key = f"{dispatch}:{user_id}" if dispatch and user_id else dispatch
        machine = (ours is EventType.OPEN and truthy_flag(field("machine_open"))) or (
            ours is EventType.CLICK and truthy_flag(field("is_suspected_bot_click"))
        )
        return NormalizedEvent(
            provider=self.name,
            event_key=event_id,
            decision_ids=decision_ids_from(_extras(field("message_extras"))),
            type=ours.value if ours else None,
            provider_type=event_type,
            name=None,
            value=None,
            occurred_at=parse_time(event.get("time"), "time"),
            machine=machine,
            dispatch_id=join_key,
            raw=event,
            message_id=join_key,
            user_agent=optional_str(field("user_agent")),
        )


def _extras(value: Any) -> dict[str, Any] | None:
    # Braze documents message_extras as an object; some exports carry it as a
    # JSON-encoded string.
    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise MalformedEventError("message_extras is not JSON") from None
    if value is None:
        return None
    return as_dict(value, "message_extras")
