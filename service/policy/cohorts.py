"""Statistics rows as dense arrays: segment x arm x exposure-hour, one per metric."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from service.core.vocabulary import OVERALL
from service.models import as_utc
from service.policy.inputs import StatRow

MAX_SEGMENTS = 50


@dataclass(frozen=True)
class Cohorts:
    segments: tuple[str, ...]  # named segments; slot len(segments) holds all other traffic
    hours: tuple[datetime, ...]  # exposure hours, oldest first
    age_hours: NDArray[np.float64]  # (H,) mean age of each hour's exposures at `now`
    counts: dict[str, NDArray[np.float64]]  # metric -> (S + 1, K, H)
    # (S + 1, K, H): mean age of each cell's exposures; empty cells get their hour's age
    exposure_age_hours: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0, 0)))

    def overall(self, metric: str) -> NDArray[np.float64]:
        """(K, H): all segments together."""
        total: NDArray[np.float64] = self.counts[metric].sum(axis=0)
        return total


def build_cohorts(
    stats: Sequence[StatRow],
    *,
    arm_ids: Sequence[int],
    metrics: Sequence[str],
    segmented: bool,
    now: datetime,
) -> Cohorts:
    index = {arm_id: i for i, arm_id in enumerate(arm_ids)}
    wanted = set(metrics)
    rows = [r for r in stats if r.arm_id in index and r.metric in wanted]
    hours = sorted({as_utc(r.hour) for r in rows})
    hour_index = {h: i for i, h in enumerate(hours)}
    if segmented:
        exposure_by_segment: dict[str, float] = {}
        for r in rows:
            if r.metric == metrics[0]:
                exposure_by_segment[r.segment] = exposure_by_segment.get(r.segment, 0) + r.count
        named = sorted(
            (s for s in exposure_by_segment if s != OVERALL),
            key=lambda s: (-exposure_by_segment[s], s),
        )
        segments = tuple(named[:MAX_SEGMENTS])
    else:
        segments = ()
    segment_index = {s: i for i, s in enumerate(segments)}
    rest = len(segments)  # unsegmented traffic, and segments beyond the cap
    counts = {m: np.zeros((rest + 1, len(arm_ids), len(hours))) for m in metrics}
    for r in rows:
        s = segment_index.get(r.segment, rest)
        counts[r.metric][s, index[r.arm_id], hour_index[as_utc(r.hour)]] += r.count
    # A cohort's age is the mean age of its exposures: the hour's start plus the stored mean
    # offset of its decisions. Where the offset is unknown the decisions are taken as spread
    # evenly over the part of the hour that has passed (never over the part still to come,
    # which would make this hour's young decisions count as no exposure at all).
    starts = np.array([(now - h).total_seconds() / 3600.0 for h in hours], dtype=np.float64)
    even = np.maximum(starts - np.minimum(starts, 1.0) / 2.0, 0.0)
    first = metrics[0] if metrics else None
    age_sum = np.zeros((rest + 1, len(arm_ids), len(hours)))
    for r in rows:
        if r.metric != first:
            continue
        h = hour_index[as_utc(r.hour)]
        offset = r.mean_offset_hours
        age = even[h] if offset is None else max(starts[h] - offset, 0.0)
        age_sum[segment_index.get(r.segment, rest), index[r.arm_id], h] += age * r.count
    exposures = counts[first] if first is not None else np.zeros_like(age_sum)
    per_hour = exposures.sum(axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        hour_age = np.where(per_hour > 0, age_sum.sum(axis=(0, 1)) / per_hour, even)
        cell_age = np.where(exposures > 0, age_sum / exposures, hour_age[None, None, :])
    return Cohorts(
        segments, tuple(hours), np.maximum(hour_age, 0.0), counts, np.maximum(cell_age, 0.0)
    )
