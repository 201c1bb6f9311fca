"""Arm lifecycle: the statuses an arm moves through and the transitions allowed between them.

A live arm's content never changes (an edit makes a new arm), so the lifecycle is only
about status. Retired and rejected are terminal: evidence belongs to the text that earned
it, and a loser comes back only as a new arm.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class ArmStatus(StrEnum):
    PROPOSED = "proposed"
    LIVE = "live"
    SUSPENDED = "suspended"
    RETIRED = "retired"
    REJECTED = "rejected"


class ArmOrigin(StrEnum):
    HUMAN = "human"
    LLM = "llm"
    IMPORT = "import"


ALLOWED_TRANSITIONS: Mapping[ArmStatus, frozenset[ArmStatus]] = MappingProxyType(
    {
        # approved (by a human or by auto-approval) or turned down by the reviewer
        ArmStatus.PROPOSED: frozenset({ArmStatus.LIVE, ArmStatus.REJECTED}),
        # suspended by a guardrail or a human; retired by the loop (eligible) or a human
        ArmStatus.LIVE: frozenset({ArmStatus.SUSPENDED, ArmStatus.RETIRED}),
        # restored after review, or retired for good
        ArmStatus.SUSPENDED: frozenset({ArmStatus.LIVE, ArmStatus.RETIRED}),
        ArmStatus.RETIRED: frozenset(),
        ArmStatus.REJECTED: frozenset(),
    }
)

TERMINAL_STATUSES: frozenset[ArmStatus] = frozenset(
    status for status, targets in ALLOWED_TRANSITIONS.items() if not targets
)


class InvalidTransition(ValueError):
    """A status change the lifecycle does not allow."""

    def __init__(self, current: ArmStatus, target: ArmStatus) -> None:
        self.current = current
        self.target = target
        allowed = sorted(ALLOWED_TRANSITIONS[current])
        if current == target:
            detail = f"the arm is already {current}"
        elif not allowed:
            detail = f"{current} is final; create a new arm instead"
        else:
            detail = f"from {current} the arm can only become {' or '.join(allowed)}"
        super().__init__(f"cannot move an arm from {current} to {target}: {detail}")


def _as_status(value: ArmStatus | str) -> ArmStatus:
    try:
        return ArmStatus(value)
    except ValueError:
        known = ", ".join(status.value for status in ArmStatus)
        raise ValueError(f"unknown arm status {value!r} (known: {known})") from None


def can_transition(current: ArmStatus | str, target: ArmStatus | str) -> bool:
    return _as_status(target) in ALLOWED_TRANSITIONS[_as_status(current)]


def check_transition(current: ArmStatus | str, target: ArmStatus | str) -> None:
    """Raise `InvalidTransition` unless an arm may move from `current` to `target`."""
    current_status, target_status = _as_status(current), _as_status(target)
    if target_status not in ALLOWED_TRANSITIONS[current_status]:
        raise InvalidTransition(current_status, target_status)
