"""The service's shared words: metric names, the overall segment, and the statuses of arms,
experiments and loop runs. One module, so a value is spelt once and read by name everywhere."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from variants.lifecycle import ArmStatus

# The statistics metric that counts exposures (a decision, or its delivery).
EXPOSURE = "exposure"
# The segment key of all traffic together; named segments are the attribute's values.
OVERALL = ""

EVENT_TYPES = ("delivered", "open", "click", "conversion", "unsubscribe", "complaint", "bounce")
EventType = Literal[
    "delivered", "open", "click", "conversion", "unsubscribe", "complaint", "bounce"
]

# Arms that /choose may serve (a suspended arm is served at weight zero: it keeps its slot).
SERVED_ARM_STATUSES: tuple[str, ...] = (ArmStatus.LIVE, ArmStatus.SUSPENDED)


class ExperimentStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    ARCHIVED = "archived"


class LoopRunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    # Accepted on read, for rows written by other tools.
    COMPLETED = "completed"


def success_metric(primary_metric: str, conversion_name: str | None) -> str:
    """The statistics metric that counts as success for an experiment."""
    if primary_metric == "conversion" and conversion_name:
        return f"conversion:{conversion_name}"
    return primary_metric


__all__ = [
    "EVENT_TYPES",
    "EXPOSURE",
    "OVERALL",
    "SERVED_ARM_STATUSES",
    "ArmStatus",
    "EventType",
    "ExperimentStatus",
    "LoopRunStatus",
    "success_metric",
]
