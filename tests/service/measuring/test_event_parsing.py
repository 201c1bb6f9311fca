"""POST /v1/events bodies: the hand-written check of plain events (``_plain_event``) gives
exactly what the EventIn model gives, for every item it takes, and leaves every other item
(and so every rejection's wording) to the model."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from service.measuring import api_events
from service.measuring.api_events import parse_events_body

RECEIVED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MISSING = object()
# Valid values, usually drawn (so that most items are valid events) ...
GOOD: dict[str, list[Any]] = {
    "event_id": ["e1", "x" * 200, "é"],
    "decision_id": ["d-1", "", "x" * 200, None, MISSING],
    "type": ["click", "open", "conversion", "bounce"],
    "name": [None, MISSING, "a", "x" * 64],
    "value": [None, MISSING, 0, -3, 2**53, 1.5, -0.0, 1e308],
    "occurred_at": [MISSING, None, "2026-11-30T10:00:00Z", "2026-11-30T10:00:00", "2026-11-30"],
    "extra": [MISSING],
}
# ... and anything, the edges of every bound included.
POOL: dict[str, list[Any]] = {
    "event_id": ["e1", "", "x" * 200, "x" * 201, 5, 5.5, True, None, MISSING, ["e"], "é\u0000"],
    "decision_id": ["d-1", "", "x" * 200, "x" * 201, None, MISSING, 7, False, {"a": 1}],
    "type": ["click", "open", "conversion", "bounce", "Click", "", None, MISSING, 3, ["click"]],
    "name": [None, MISSING, "", "a", "x" * 64, "x" * 65, 3, False],
    "value": [
        *[None, MISSING, 0, 1, -3, 2**53, -(2**53), 2**53 + 1, 2**70, 10**30],
        *[1.5, -0.0, 1e308, True, False, "1.5", "abc", [1]],
    ],
    "occurred_at": [
        *[MISSING, None, "2026-11-30T10:00:00Z", "2026-11-30T10:00:00", "2026-11-30T10:00"],
        *["2026-11-30T10:00:00+02:00", "2026-11-30", "1969-12-31T23:59:59Z", "2026-13-01"],
        *["2101-01-01T00:00:00Z", "2030-01-01T00:00:00Z", "2026-12-01T11:59:59Z", "soon"],
        *[1_700_000_000, 1_700_000_000.5, True, "1700000000", "2026-11-30T10:00:00.123456Z"],
    ],
    "extra": [MISSING, MISSING, MISSING, 1],
}


def random_item(rng: random.Random) -> Any:
    if rng.random() < 0.03:
        return rng.choice([None, 3, "click", [1, 2], []])
    item = {
        field: rng.choice(values if rng.random() < 0.15 else GOOD[field])
        for field, values in POOL.items()
    }
    return {field: value for field, value in item.items() if value is not MISSING}


def model_only(monkeypatch: pytest.MonkeyPatch, body: bytes) -> Any:
    with monkeypatch.context() as patched:
        patched.setattr(api_events, "_plain_event", lambda *_: None)
        return parse_events_body(body, received_at=RECEIVED, max_events=1000)


@pytest.mark.parametrize("seed", range(4))
def test_plain_events_parse_exactly_as_the_model_reads_them(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    taken = 0
    for _ in range(40):
        items = [random_item(rng) for _ in range(50)]
        body = json.dumps(items).encode()
        events, poison = parse_events_body(body, received_at=RECEIVED, max_events=1000)
        expected_events, expected_poison = model_only(monkeypatch, body)
        assert (events, poison) == (expected_events, expected_poison)
        # Equal and of the same types (an integer value is read as a float either way).
        assert [type(e.value) for e in events] == [type(e.value) for e in expected_events]
        taken += len(events)
    assert taken > 600  # the pool makes enough valid events for the comparison to mean much


def test_an_ordinary_batch_takes_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the check: the usual events never build an EventIn."""
    items = [{"event_id": f"e{i}", "decision_id": f"d{i}", "type": "click"} for i in range(100)] + [
        {
            "event_id": "v",
            "decision_id": "d",
            "type": "conversion",
            "name": "order",
            "value": 12,
            "occurred_at": "2026-11-30T10:00:00+01:00",
        }
    ]

    def no_model(*_: Any, **__: Any) -> Any:
        raise AssertionError("the model was used")

    monkeypatch.setattr(api_events.EventIn, "model_validate", no_model)
    events, poison = parse_events_body(
        json.dumps(items).encode(), received_at=RECEIVED, max_events=1000
    )
    assert poison == []
    assert len(events) == 101
    last = events[-1]
    assert (last.value, last.name, last.decision_ids) == (12.0, "order", ("d",))
    assert type(last.value) is float
    assert last.occurred_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
