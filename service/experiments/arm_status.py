"""Recording an arm's status change, with who, why and the evidence."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from service.experiments import repository as repo
from service.models import Arm, ArmStatusChange


def set_arm_status(
    session: Session,
    arm: Arm,
    target: str,
    *,
    reason: str,
    actor: str,
    evidence: dict[str, Any] | None = None,
) -> None:
    """Record a status change; the caller has checked the transition and republishes."""
    assert arm.id is not None
    previous = arm.status
    arm.status = target
    session.add(arm)
    repo.record_status_change(
        session,
        change=ArmStatusChange(
            arm_id=arm.id,
            from_status=previous,
            to_status=target,
            actor=actor,
            reason=reason,
            evidence=evidence,
        ),
    )
