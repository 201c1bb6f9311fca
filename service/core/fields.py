"""Field types shared by the request models: bounded ids, times and recipient ids."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, BeforeValidator, StringConstraints, WithJsonSchema

# Row ids are 32-bit in both databases: a larger one names nothing, and binding it would
# overflow the driver (a 500) instead of answering the caller.
MAX_ID = 2**31 - 1

IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="A row id.")]
AfterId = Annotated[int, Query(ge=0, le=MAX_ID, description="Page after this id.")]

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _utc_in_range(value: datetime) -> datetime:
    """Aware and in UTC (naive means UTC); far dates are refused here, not by an
    OverflowError when the offset is applied or the database binds them."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return utc


UtcTime = Annotated[
    datetime,
    AfterValidator(_utc_in_range),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
            "description": "ISO 8601 (no offset means UTC) or unix seconds; 1970 to 2100.",
        }
    ),
]


def _decimal_text(value: Any) -> Any:
    """CRMs often send numeric recipient ids: an integer is its decimal text, so 42 and
    "42" are the same unit. Floats and booleans are refused: 1e21 or 12.0 would not be
    the id the CRM holds, and true is not an id."""
    if isinstance(value, bool):
        raise ValueError("must be a string or an integer, not a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueError("must be a string or an integer; a float may have lost digits")
    return value


def _recipient_schema(max_length: int, description: str) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "string", "minLength": 1, "maxLength": max_length},
            {"type": "integer"},
        ],
        "description": f"{description} An integer is taken as its decimal text.",
    }


UnitIdText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256),
    BeforeValidator(_decimal_text),
    WithJsonSchema(_recipient_schema(256, "Recipient id; stored only as an HMAC.")),
]
SendIdText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    BeforeValidator(_decimal_text),
    WithJsonSchema(_recipient_schema(128, "The send (campaign/message) id.")),
]


def finite_json(value: Any) -> Any:
    """Refuse NaN and infinities anywhere in a JSON value (Python's parser takes NaN,
    Infinity and 1e400; JSON has none of them and PostgreSQL's json type refuses them)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def settings_not_null(names: Sequence[str]) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` for PATCH models whose optional settings refuse null: the
    document says what ``refuse_null`` enforces (null is no value for these)."""

    def edit(schema: dict[str, Any]) -> None:
        for name in names:
            prop = schema.get("properties", {}).get(name)
            if prop and "anyOf" in prop:
                prop["anyOf"] = [s for s in prop["anyOf"] if s.get("type") != "null"]
                prop.pop("default", None)

    return edit


def refuse_null(value: Any) -> Any:
    """A PATCH setting left out keeps its value; an explicit null is refused, naming why."""
    if value is None:
        raise ValueError("cannot be null; leave the field out to keep its value")
    return value
