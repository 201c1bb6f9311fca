"""Parse a POST /v1/events body into normalized events; one bad event never sinks the rest."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any, get_args

import orjson
from pydantic import TypeAdapter, ValidationError

from service.core.errors import InvalidInput, PayloadTooLarge, describe_validation_errors
from service.core.fields import UtcTime
from service.core.storable import find_unstorable, safe_text
from service.measuring.adapters.base import NormalizedEvent, Poison
from service.measuring.schemas import EventIn
from service.models import as_utc

PROVIDER = "api"
MAX_FUTURE = timedelta(days=1)
# orjson reads an integer past 64 bits as a float (the standard parser keeps its digits):
# a body with a run of 20 digits takes the standard parser. Found by mapping every digit to
# "0" and everything else to "." and searching for the run (a regex took 12 ms for 1,000
# events; this, a tenth of a millisecond).
_DIGITS = bytes(ord("0") if b in b"0123456789" else ord(".") for b in range(256))
_LONG_RUN = b"0" * 20
# What ``_plain_event`` takes without the model (see there).
_FIELDS = frozenset(EventIn.model_fields)
_TYPES = frozenset(get_args(EventIn.model_fields["type"].annotation))
_MAX_EXACT_INT = 2**53
_TIME = TypeAdapter(UtcTime)


def parse_events_body(
    body: bytes, *, received_at: datetime, max_events: int
) -> tuple[list[NormalizedEvent], list[Poison]]:
    data, storable = _loads(body)
    items = data if isinstance(data, list) else [data]
    if not isinstance(data, list | dict):
        raise InvalidInput("body must be an event object or a list of them", field="body")
    if isinstance(data, dict) and "events" in data and not data.keys() & _FIELDS:
        # {"events": [...]}, as many APIs take a batch: say so instead of "event_id: Field
        # required" for an event that was never meant to be one.
        raise InvalidInput(
            "events: post the events themselves as the body (one object or a list), "
            "not wrapped in an object",
            field="events",
        )
    if not items:
        raise InvalidInput("no events in the body", field="body")
    if len(items) > max_events:
        raise PayloadTooLarge(
            f"at most {max_events} events per request, got {len(items)}", field="body"
        )
    events: list[NormalizedEvent] = []
    poison: list[Poison] = []
    times: dict[str, datetime | None] = {}
    for index, item in enumerate(items):
        if storable:
            plain = _plain_event(item, received_at, times)
            if plain is not None:
                events.append(plain)
                continue
        event_key = caller_event_id(item)
        unstorable = None if storable else find_unstorable(item)
        if unstorable is not None:
            field, reason = unstorable
            poison.append(Poison(index, f"{field}: {reason}", _raw_text(item), event_key))
            continue
        try:
            parsed = EventIn.model_validate(item)
        except ValidationError as exc:
            message, _details = describe_validation_errors(list(exc.errors()))  # type: ignore[arg-type]
            poison.append(Poison(index, safe_text(message), _raw_text(item), event_key))
            continue
        occurred = as_utc(parsed.occurred_at) if parsed.occurred_at else received_at
        if occurred - received_at > MAX_FUTURE:
            poison.append(
                Poison(index, "occurred_at: is in the future", _raw_text(item), event_key)
            )
            continue
        events.append(event_from(parsed, occurred, item))
    return events, poison


def _plain_event(
    item: Any, received_at: datetime, times: dict[str, datetime | None]
) -> NormalizedEvent | None:
    """The event of an item that plainly satisfies ``EventIn``, checked by hand: a model
    per event was most of the time of parsing a batch. None whenever in doubt (a value of
    another JSON type, a bound crossed, a time in the future): the model then decides, so
    it alone accepts anything unusual and names the field at fault. ``times`` keeps each
    distinct ``occurred_at`` text's verdict for the batch (None: the model's to judge)."""
    if type(item) is not dict or not item.keys() <= _FIELDS:
        return None
    event_id = item.get("event_id")
    decision_id = item.get("decision_id")
    kind = item.get("type")
    name = item.get("name")
    value = item.get("value")
    if type(event_id) is not str or not 0 < len(event_id) <= 200:
        return None
    if decision_id is not None and (type(decision_id) is not str or len(decision_id) > 200):
        return None
    if type(kind) is not str or kind not in _TYPES:
        return None
    if name is not None and (type(name) is not str or not 0 < len(name) <= 64):
        return None
    if type(value) is int and -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT:
        value = float(value)
    elif value is not None and (type(value) is not float or not math.isfinite(value)):
        return None
    occurred = _plain_time(item.get("occurred_at"), received_at, times)
    if occurred is None:
        return None
    return NormalizedEvent(
        provider=PROVIDER,
        event_key=event_id,
        decision_ids=(decision_id,) if decision_id else (),
        type=kind,
        provider_type=kind,
        name=name,
        value=value,
        occurred_at=occurred,
        machine=False,
        dispatch_id=None,
        raw=item,
    )


def _plain_time(
    text: Any, received_at: datetime, times: dict[str, datetime | None]
) -> datetime | None:
    """``occurred_at`` as the model reads it (the receipt time when absent), or None when
    the model is to judge it: not a string, not a valid time, or in the future."""
    if text is None:
        return received_at
    if type(text) is not str:
        return None
    if text not in times:
        try:
            occurred: datetime | None = as_utc(_TIME.validate_python(text))
        except ValidationError:
            occurred = None
        times[text] = occurred
    found = times[text]
    if found is None or found - received_at > MAX_FUTURE:
        return None
    return found


def _loads(body: bytes) -> tuple[Any, bool]:
    """The parsed body, and whether every string in it is known to be storable.

    orjson first (a third of the standard parser's time): it refuses what the standard
    parser accepts and we answer differently (a lone surrogate, NaN, a number out of range,
    a byte-order mark, UTF-16), and those bodies take the standard parser as before. What
    orjson reads holds no lone surrogate, and a NUL can only be spelt ``\\u0000``: without
    one, no string needs ``find_unstorable``'s walk."""
    if _LONG_RUN not in body.translate(_DIGITS):
        try:
            return orjson.loads(body), b"\\u0000" not in body
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(body), False
    except ValueError as exc:  # not JSON, not UTF-8, or an integer of over 4,300 digits
        raise InvalidInput("request body is not valid JSON", field="body") from exc
    except RecursionError as exc:  # the HTTP guard refuses deep bodies first; belt and braces
        raise InvalidInput("request body is nested too deep", field="body") from exc


def _raw_text(item: Any) -> str:
    """A rejected event's text for its dead letter (only rejected events need it: encoding
    every event was a sixth of parsing a batch)."""
    return json.dumps(item, default=str)  # ASCII: escapes what a database cannot store


def caller_event_id(item: Any) -> str | None:
    """The caller's event_id, echoed in a rejection so it can be matched, whenever it can
    be read (a string or a number), even when the event fails validation."""
    if not isinstance(item, dict):
        return None
    value = item.get("event_id")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    if isinstance(value, str):
        # A lone surrogate cannot be answered in UTF-8 (it becomes "?"); NUL can, escaped.
        return value.encode("utf-8", "replace").decode("utf-8")
    return str(value)


def event_from(parsed: EventIn, occurred: datetime, raw: Any) -> NormalizedEvent:
    return NormalizedEvent(
        provider=PROVIDER,
        event_key=parsed.event_id,
        decision_ids=(parsed.decision_id,) if parsed.decision_id else (),
        type=parsed.type,
        provider_type=parsed.type,
        name=parsed.name,
        value=parsed.value,
        occurred_at=occurred,
        machine=False,
        dispatch_id=None,
        raw=raw if isinstance(raw, dict) else {"value": raw},
    )
