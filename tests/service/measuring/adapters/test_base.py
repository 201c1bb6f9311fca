from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.measuring.adapters import ADAPTERS, Adapter, decision_ids_from, split_setting
from service.measuring.adapters.base import MalformedEventError, parse_time
from tests.service.measuring.adapters.signers import DECISION_A, DECISION_B, DECISION_C


def test_every_key_starting_with_bl_decision_counts() -> None:
    custom = {
        "bl_decision": DECISION_A,
        "bl_decision_subject": DECISION_B,
        "bl_decision_preheader": f" {DECISION_C} , {DECISION_A} ",
        "bl_decisions_are_fun": DECISION_B,
        "campaign": "spring",
        "decision": "not ours",
    }
    assert decision_ids_from(custom) == (DECISION_A, DECISION_B, DECISION_C)


def test_lists_are_read_and_ids_deduplicated_across_sources() -> None:
    assert decision_ids_from(
        {"bl_decision": [DECISION_A]}, {"bl_decision_x": [DECISION_A, DECISION_B]}
    ) == (DECISION_A, DECISION_B)


def test_no_sources_or_empty_values_give_no_ids() -> None:
    assert decision_ids_from(None, "text", {"bl_decision": ""}, {"bl_decision": None}) == ()


@pytest.mark.parametrize(
    "value",
    ["has space", "a" * 81, "padded==", "emoji🙂", 42, {"nested": "x"}],
)
def test_a_value_that_is_not_a_token_is_malformed(value: object) -> None:
    with pytest.raises(MalformedEventError, match="decision id"):
        decision_ids_from({"bl_decision": value})


def test_split_setting_handles_rotation_lists() -> None:
    assert split_setting(" old , new ,") == ("old", "new")
    assert split_setting(None) == ()
    assert split_setting(["a", " ", "b"]) == ("a", "b")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1772452800, datetime(2026, 3, 2, 12, tzinfo=UTC)),
        (1772452800.5, datetime(2026, 3, 2, 12, 0, 0, 500000, tzinfo=UTC)),
        ("1772452800", datetime(2026, 3, 2, 12, tzinfo=UTC)),
        ("2026-03-02T12:00:00Z", datetime(2026, 3, 2, 12, tzinfo=UTC)),
        ("2026-03-02T07:00:00-05:00", datetime(2026, 3, 2, 12, tzinfo=UTC)),
        ("2026-03-02T12:00:00", datetime(2026, 3, 2, 12, tzinfo=UTC)),
    ],
)
def test_times_are_read_in_utc(value: object, expected: datetime) -> None:
    assert parse_time(value, "t") == expected


def test_registry_holds_every_provider_and_each_meets_the_protocol() -> None:
    assert set(ADAPTERS) == {
        "sendgrid",
        "mailgun",
        "postmark",
        "ses",
        "customerio",
        "braze",
        "generic",
    }
    for name, adapter in ADAPTERS.items():
        assert isinstance(adapter, Adapter)
        assert adapter.name == name
        assert adapter.malformed_status not in (401, 403, 406) or name in ("postmark", "mailgun")
