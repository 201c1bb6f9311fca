"""Guardrail suspension: which breaching arms a snapshot suspends, and the reason recorded.

Only arms still live are suspended (a human may have acted since); the refresher writes the
status changes and the simulator applies the same choice to its own statuses.
"""

from __future__ import annotations

from collections.abc import Callable

from service.core.vocabulary import ArmStatus
from service.policy.snapshot import Breach, Snapshot


def arms_to_suspend(
    snapshot: Snapshot, status_of: Callable[[int], str | None]
) -> dict[int, Breach]:
    """The breaching arms that are live now, with their evidence."""
    breached = snapshot.guardrails.breached if snapshot.guardrails is not None else {}
    return {
        arm_id: breach for arm_id, breach in breached.items() if status_of(arm_id) == ArmStatus.LIVE
    }


def suspension_reason(breach: Breach) -> str:
    figures = breach.figures
    detail = ", ".join(
        f"{m} {figures[m]['rate']:.3%} vs {figures[m]['reference_rate']:.3%} "
        f"(P={figures[m]['probability_exceeds']:.3f})"
        for m in breach.metrics
    )
    return f"guardrail breached: {detail}; restore after review"
