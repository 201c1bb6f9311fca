"""Statistics rows as dense arrays: segment x arm x exposure-hour, one per metric."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bandits.cohort_ages import FloatArray, cohort_cdf
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
    # The spread (standard deviation) of those ages: (H,) per hour, (S + 1, K, H) per cell.
    age_spread_hours: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    exposure_age_spread_hours: NDArray[np.float64] = field(
        default_factory=lambda: np.zeros((0, 0, 0))
    )

    def discount(self, cdf: Callable[[ArrayLike], FloatArray]) -> FloatArray:
        """(S + 1, K, H): F of each cell, the mean of F over its exposures' ages."""
        return cohort_cdf(cdf, self.exposure_age_hours, self.exposure_age_spread_hours)

    def hour_discount(self, cdf: Callable[[ArrayLike], FloatArray]) -> FloatArray:
        """(H,): F of each hour's exposures together."""
        return cohort_cdf(cdf, self.age_hours, self.age_spread_hours)

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
    # offset of its decisions, with their spread from the stored squares (none known: one
    # age). Where the offset is unknown the decisions are taken as spread evenly over the
    # part of the hour that has passed (never over the part still to come, which would make
    # this hour's young decisions count as no exposure at all), with that even spread.
    starts = np.array([(now - h).total_seconds() / 3600.0 for h in hours], dtype=np.float64)
    passed = np.minimum(np.maximum(starts, 0.0), 1.0)
    even = np.maximum(starts - passed / 2.0, 0.0)
    even_spread = passed / np.sqrt(12.0)
    first = metrics[0] if metrics else None
    age_sum = np.zeros((rest + 1, len(arm_ids), len(hours)))
    square_sum = np.zeros_like(age_sum)
    for r in rows:
        if r.metric != first:
            continue
        h = hour_index[as_utc(r.hour)]
        offset = r.mean_offset_hours
        if offset is None:
            age, spread = even[h], even_spread[h]
        else:
            age, spread = max(starts[h] - offset, 0.0), r.offset_spread_hours or 0.0
        cell = (segment_index.get(r.segment, rest), index[r.arm_id], h)
        age_sum[cell] += age * r.count
        square_sum[cell] += (age * age + spread * spread) * r.count
    exposures = counts[first] if first is not None else np.zeros_like(age_sum)
    per_hour = exposures.sum(axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        hour_age = np.where(per_hour > 0, age_sum.sum(axis=(0, 1)) / per_hour, even)
        hour_square = np.where(
            per_hour > 0, square_sum.sum(axis=(0, 1)) / per_hour, even**2 + even_spread**2
        )
        cell_age = np.where(exposures > 0, age_sum / exposures, hour_age[None, None, :])
        cell_square = np.where(exposures > 0, square_sum / exposures, hour_square[None, None, :])
    return Cohorts(
        segments,
        tuple(hours),
        np.maximum(hour_age, 0.0),
        counts,
        np.maximum(cell_age, 0.0),
        _spread(hour_age, hour_square),
        _spread(cell_age, cell_square),
    )


def _spread(mean: FloatArray, square: FloatArray) -> FloatArray:
    """The standard deviation from the mean and the mean square (rounding clipped at 0)."""
    return np.asarray(np.sqrt(np.maximum(square - mean * mean, 0.0)), dtype=np.float64)
