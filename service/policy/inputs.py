"""Plain inputs to the snapshot computation, read from the database in one place."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.core.vocabulary import success_metric
from service.models import Arm, Experiment


@dataclass(frozen=True)
class ArmInfo:
    id: int
    content: str
    payload: dict[str, Any] | None
    control: bool
    status: str
    tags: tuple[str, ...] = ()
    restored_at: datetime | None = None  # a human's restore: guardrails judge only newer data

    @classmethod
    def of(cls, arm: Arm, restored_at: datetime | None = None) -> ArmInfo:
        assert arm.id is not None
        return cls(
            arm.id,
            arm.content,
            arm.payload,
            arm.is_control,
            arm.status,
            tuple(arm.tags),
            restored_at,
        )


@dataclass(frozen=True)
class ExperimentInfo:
    id: int
    key: str
    status: str
    epoch: int
    success_metric: str
    exposure_event: str
    attribution_window_hours: float
    exploration_share: float
    min_exposures: int
    min_successes: int
    segment_attribute: str | None
    half_life_hours: float | None
    guardrails: tuple[tuple[str, float], ...] = field(default=())
    holdout_share: float = 0.0

    @classmethod
    def of(cls, experiment: Experiment) -> ExperimentInfo:
        assert experiment.id is not None
        return cls(
            id=experiment.id,
            key=experiment.key,
            status=experiment.status,
            epoch=experiment.epoch,
            success_metric=success_metric(experiment.primary_metric, experiment.conversion_name),
            exposure_event=experiment.exposure_event,
            attribution_window_hours=experiment.attribution_window_hours,
            exploration_share=experiment.exploration_share,
            min_exposures=experiment.min_exposures,
            min_successes=experiment.min_successes,
            segment_attribute=experiment.segment_attribute,
            half_life_hours=experiment.half_life_hours,
            guardrails=tuple((g["metric"], float(g["tolerance"])) for g in experiment.guardrails),
            holdout_share=experiment.holdout_share or 0.0,
        )


@dataclass(frozen=True)
class StatRow:
    segment: str
    arm_id: int
    hour: datetime
    metric: str
    count: int
    # Exposure rows: mean hours from ``hour`` to the decisions (None: unknown, e.g. old rows).
    mean_offset_hours: float | None = None
    # Exposure rows: the standard deviation of those hours, the spread of the cohort's ages
    # (None: unknown, e.g. rows from before the squares were kept; the cohort is one age).
    offset_spread_hours: float | None = None

    @classmethod
    def of_sums(
        cls,
        segment: str,
        arm_id: int,
        hour: datetime,
        metric: str,
        count: int,
        offset_sum_hours: float | None = None,
        offset_sq_sum_hours: float | None = None,
    ) -> StatRow:
        """A row from its stored sums: offsets (hours) and their squares (hours squared)."""
        if offset_sum_hours is None or count <= 0:
            return cls(segment, arm_id, hour, metric, count)
        mean = offset_sum_hours / count
        spread = None
        if offset_sq_sum_hours is not None:
            # Clipped at 0: the difference of two sums can round below it.
            spread = math.sqrt(max(offset_sq_sum_hours / count - mean * mean, 0.0))
        return cls(segment, arm_id, hour, metric, count, mean, spread)


@dataclass(frozen=True)
class SuccessDelay:
    """One observed first success: its delay from exposure and its cohort's age, in hours.

    ``earliest_hours``: the shortest delay this success could have been read with. The
    refresher reads the newest successes only (by when they happened), so from a decision
    older than the oldest one read, only delays of at least (cutoff - decision) are seen:
    left truncation, which the delay fit must know or it over-weights long delays.
    """

    delay_hours: float
    cohort_age_hours: float
    earliest_hours: float = 0.0
