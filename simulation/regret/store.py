"""Statistics in memory, counted by the service's own rules, on a simulated clock.

The service keeps statistics in ``stat_bucket`` rows keyed by ``stat_key`` (the decision's
hour: cohorts), counts exposures when a decision is stored (exposure event ``decision``) and a
success as the first event of the metric per decision inside the attribution window, in the
cohort of the decision, at the moment the event arrives. This store does the same, keyed by the
same ``stat_key`` and ``metrics_for``, so ``compute_snapshot`` gets exactly the ``StatRow`` and
``SuccessDelay`` inputs the refresher would read from the database at that simulated instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from service.core.vocabulary import EXPOSURE
from service.measuring.counting import CountableEvent, metrics_for, stat_key
from service.measuring.stats_repository import StatKey
from service.models import Decision
from service.policy.inputs import StatRow, SuccessDelay

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Simulated time zero. Any fixed instant works; a Monday midnight keeps hours readable.
SIM_START = datetime(2025, 1, 6, tzinfo=UTC)
# The refresher reads at most this many of the newest first successes for the delay estimate.
DELAY_SAMPLE_LIMIT = 20_000


def at_hours(hours: float) -> datetime:
    """The simulated instant ``hours`` after time zero."""
    return SIM_START + timedelta(hours=float(hours))


@dataclass
class _Pending:
    """Events that will happen, not yet seen by the service: one entry per first event."""

    occurs: FloatArray  # hours
    sent: FloatArray  # hours: when the decision was made
    arm: IntArray  # arm id
    segment: IntArray  # index into the store's segment names
    metric: IntArray  # index into the store's metric names


class SimulatedStatistics:
    """The statistics one simulated experiment would have, as of the last ``advance``."""

    def __init__(
        self,
        *,
        experiment_id: int,
        epoch: int,
        segments: Sequence[str],
        success_metric: str,
        event_types: Sequence[str],
        attribution_window_hours: float,
    ) -> None:
        self.experiment_id = experiment_id
        self.epoch = epoch
        self.segments = tuple(segments)
        self.success_metric = success_metric
        self.window_hours = attribution_window_hours
        # What each event type counts as, by the service's rule (exposure event `decision`).
        self._metrics_of = {
            t: metrics_for(CountableEvent(0, "", t, None, None, SIM_START), "decision")
            for t in event_types
        }
        self.event_types = tuple(event_types)
        self._counts: dict[StatKey, int] = {}
        self._rows: dict[StatKey, StatRow] = {}
        self._offsets: dict[StatKey, tuple[float, float]] = {}  # hours, hours squared
        self._totals: dict[tuple[str, int], int] = {}
        self._cohorts: dict[tuple[int, int, int], Decision] = {}
        self._pending: list[_Pending] = []
        self._delay_sent = np.zeros(0)
        self._delay_occurs = np.zeros(0)
        self.now_hours = 0.0

    def _cohort(self, hour: int, segment: int, arm_id: int) -> Decision:
        """A stand-in decision of one cohort: ``stat_key`` reads only its key fields."""
        key = (hour, segment, arm_id)
        found = self._cohorts.get(key)
        if found is None:
            found = Decision(
                id=f"sim-{hour}-{segment}-{arm_id}",
                experiment_id=self.experiment_id,
                epoch=self.epoch,
                arm_id=arm_id,
                segment=self.segments[segment],
                propensity=1.0,
                policy_version=0,
                created_at=at_hours(hour),
            )
            self._cohorts[key] = found
        return found

    def _add(
        self,
        hours: IntArray,
        segment: IntArray,
        arm: IntArray,
        metric: str,
        offsets: FloatArray | None = None,
    ) -> None:
        """Count into cohorts; ``offsets`` (hours into the cohort's hour) for exposures, as the
        service keeps their sum and the sum of their squares, so that a cohort's mean age is
        known to the second and the spread of its ages too."""
        if hours.size == 0:
            return
        keys = np.stack([hours, segment, arm], axis=1)
        groups, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        sums = squares = None
        if offsets is not None:
            sums = np.bincount(inverse.ravel(), weights=offsets, minlength=len(groups))
            squares = np.bincount(inverse.ravel(), weights=offsets**2, minlength=len(groups))
        for j, ((hour, seg, arm_id), count) in enumerate(
            zip(groups.tolist(), counts.tolist(), strict=True)
        ):
            key = stat_key(self._cohort(hour, seg, arm_id), metric)
            total = self._counts.get(key, 0) + count
            self._counts[key] = total
            if sums is not None and squares is not None:
                offset, square = self._offsets.get(key, (0.0, 0.0))
                self._offsets[key] = (offset + float(sums[j]), square + float(squares[j]))
            self._rows[key] = StatRow.of_sums(
                key[2], key[3], key[4], key[5], total, *self._offsets.get(key, (None, None))
            )
            self._totals[(metric, arm_id)] = self._totals.get((metric, arm_id), 0) + count

    def expose(self, *, sent: FloatArray, arm: IntArray, segment: IntArray) -> None:
        """Decisions stored at ``sent`` hours: an exposure each, in the decision's cohort."""
        hours = np.floor(sent).astype(np.int64)
        self._add(hours, segment, arm, EXPOSURE, offsets=sent - hours)

    def schedule(
        self,
        *,
        event_type: str,
        sent: FloatArray,
        delay: FloatArray,
        arm: IntArray,
        segment: IntArray,
    ) -> None:
        """First events that will arrive ``delay`` hours after their decisions.

        Events later than the attribution window are dropped, as ingestion marks them late.
        """
        inside = delay <= self.window_hours
        if not inside.any():
            return
        self._pending.append(
            _Pending(
                occurs=sent[inside] + delay[inside],
                sent=sent[inside],
                arm=arm[inside],
                segment=segment[inside],
                metric=np.full(int(inside.sum()), self.event_types.index(event_type)),
            )
        )

    def advance(self, now_hours: float) -> None:
        """Count every event that has happened by ``now_hours``."""
        self.now_hours = now_hours
        if not self._pending:
            return
        names = [f.name for f in fields(_Pending)]
        pending = _Pending(*(np.concatenate([getattr(p, n) for p in self._pending]) for n in names))
        due = pending.occurs <= now_hours
        self._pending = [_Pending(*(getattr(pending, n)[~due] for n in names))]
        if not due.any():
            return
        hours = np.floor(pending.sent[due]).astype(np.int64)
        for index, event_type in enumerate(self.event_types):
            mine = pending.metric[due] == index
            for metric in self._metrics_of[event_type]:
                self._add(hours[mine], pending.segment[due][mine], pending.arm[due][mine], metric)
            if self.success_metric in self._metrics_of[event_type]:
                self._delay_sent = np.concatenate([self._delay_sent, pending.sent[due][mine]])
                self._delay_occurs = np.concatenate([self._delay_occurs, pending.occurs[due][mine]])

    def rows(self) -> list[StatRow]:
        return list(self._rows.values())

    def success_delays(self) -> list[SuccessDelay]:
        """The newest first successes as the refresher reads them: delay and cohort age."""
        newest = np.argsort(-self._delay_occurs, kind="stable")[:DELAY_SAMPLE_LIMIT]
        age = np.maximum(self.now_hours - self._delay_sent[newest], 0.0)
        delay = np.minimum(
            np.maximum(self._delay_occurs[newest] - self._delay_sent[newest], 0.0), age
        )
        earliest = np.zeros_like(delay)
        if newest.size >= DELAY_SAMPLE_LIMIT:  # as the repository: left-truncated at the cutoff
            cutoff = float(self._delay_occurs[newest].min())
            earliest = np.minimum(np.maximum(cutoff - self._delay_sent[newest], 0.0), delay)
        return [
            SuccessDelay(d, a, e)
            for d, a, e in zip(delay.tolist(), age.tolist(), earliest.tolist(), strict=True)
        ]

    def totals(self, metric: str, arm_ids: Sequence[int]) -> FloatArray:
        """Counts of ``metric`` per arm over every segment and cohort (for the baselines)."""
        return np.array([float(self._totals.get((metric, a), 0)) for a in arm_ids])
