from __future__ import annotations

import itertools

import pytest

from variants.lifecycle import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATUSES,
    ArmOrigin,
    ArmStatus,
    InvalidTransition,
    can_transition,
    check_transition,
)

ALLOWED = [
    ("proposed", "live"),
    ("proposed", "rejected"),
    ("live", "suspended"),
    ("live", "retired"),
    ("suspended", "live"),
    ("suspended", "retired"),
]


@pytest.mark.parametrize(("current", "target"), ALLOWED)
def test_allowed_transitions_pass(current: str, target: str) -> None:
    check_transition(current, target)
    check_transition(ArmStatus(current), ArmStatus(target))
    assert can_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        pair
        for pair in itertools.product([s.value for s in ArmStatus], repeat=2)
        if pair not in ALLOWED
    ],
)
def test_every_other_transition_is_refused(current: str, target: str) -> None:
    with pytest.raises(InvalidTransition) as caught:
        check_transition(current, target)
    assert caught.value.current == current
    assert caught.value.target == target
    assert not can_transition(current, target)


def test_retired_to_live_explains_that_retired_is_final() -> None:
    with pytest.raises(InvalidTransition, match="retired is final; create a new arm instead"):
        check_transition(ArmStatus.RETIRED, ArmStatus.LIVE)


def test_message_lists_what_is_allowed() -> None:
    with pytest.raises(InvalidTransition, match="can only become live or rejected"):
        check_transition("proposed", "suspended")
    with pytest.raises(InvalidTransition, match="already live"):
        check_transition("live", "live")


def test_invalid_transition_is_a_value_error() -> None:
    assert issubclass(InvalidTransition, ValueError)


def test_terminal_statuses() -> None:
    assert {ArmStatus.RETIRED, ArmStatus.REJECTED} == TERMINAL_STATUSES
    assert set(ALLOWED_TRANSITIONS) == set(ArmStatus)


def test_origins() -> None:
    assert [origin.value for origin in ArmOrigin] == ["human", "llm", "import"]
