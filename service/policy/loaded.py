"""The in-memory form of a snapshot that /choose samples from, and its cache."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bandits import PreparedSampler
from service.core.vocabulary import OVERALL, ExperimentStatus
from service.policy.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class ServingArm:
    id: int
    content: str
    payload: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class SegmentPolicy:
    allocation: NDArray[np.float64]
    exploit: NDArray[np.float64]
    eligible: NDArray[np.bool_]
    exploration_share: float
    sampler: PreparedSampler


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    experiment_id: int
    key: str
    version: int
    epoch: int
    status: str
    segment_attribute: str | None
    counts_exposure_at_decision: bool
    arms: tuple[ServingArm, ...]  # aligned with every SegmentPolicy's arrays
    all_arms: Mapping[int, ServingArm]
    segments: Mapping[str, SegmentPolicy]
    fallback: ServingArm | None
    holdout_share: float = 0.0

    @property
    def servable(self) -> bool:
        return self.status == ExperimentStatus.RUNNING and OVERALL in self.segments

    def segment_for(self, context: Mapping[str, Any] | None) -> tuple[str, SegmentPolicy]:
        """The segment a decision is logged under, and the allocation it is served from.

        A segment value not yet in the snapshot is logged under its own name (so it gains
        evidence) and served from the overall allocation until the next refresh knows it.
        """
        overall = self.segments[OVERALL]
        if not self.segment_attribute or not context:
            return OVERALL, overall
        raw = context.get(self.segment_attribute)
        if raw is None or isinstance(raw, (dict, list)):
            return OVERALL, overall
        value = str(raw)[:128]
        return value, self.segments.get(value, overall)


def load_policy(experiment_id: int, version: int, snapshot: Snapshot) -> LoadedPolicy:
    by_id = {a.id: ServingArm(a.id, a.content, a.payload) for a in snapshot.arms}
    arms = tuple(by_id[arm_id] for arm_id in snapshot.arm_ids)
    segments = {}
    for name, seg in snapshot.segments.items():
        exploit = np.asarray(seg.exploit, dtype=np.float64)
        eligible = np.asarray(seg.eligible, dtype=bool)
        segments[name] = SegmentPolicy(
            allocation=np.asarray(seg.allocation, dtype=np.float64),
            exploit=exploit,
            eligible=eligible,
            exploration_share=seg.exploration_share,
            sampler=PreparedSampler.prepare(exploit, eligible, seg.exploration_share),
        )
    experiment = snapshot.experiment
    fallback_id = snapshot.fallback_arm_id
    return LoadedPolicy(
        experiment_id=experiment_id,
        key=experiment.key,
        version=version,
        epoch=experiment.epoch,
        status=experiment.status,
        segment_attribute=experiment.segment_attribute,
        counts_exposure_at_decision=experiment.exposure_event == "decision",
        arms=arms,
        all_arms=by_id,
        segments=segments,
        fallback=by_id.get(fallback_id) if fallback_id is not None else None,
        holdout_share=experiment.holdout_share,
    )


class PolicyCache:
    """Newest loaded policy per experiment key; swapped whole, read without locks."""

    def __init__(self) -> None:
        self._by_key: dict[str, LoadedPolicy] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> LoadedPolicy | None:
        return self._by_key.get(key)

    def versions(self) -> dict[int, int]:
        return {p.experiment_id: p.version for p in self._by_key.values()}

    def put(self, policy: LoadedPolicy) -> None:
        with self._lock:
            current = self._by_key.get(policy.key)
            if (
                current is not None
                and current.version >= policy.version
                and (current.experiment_id == policy.experiment_id)
            ):
                return
            by_key = {
                k: v for k, v in self._by_key.items() if v.experiment_id != policy.experiment_id
            }
            by_key[policy.key] = policy
            self._by_key = by_key

    def clear(self) -> None:
        with self._lock:
            self._by_key = {}
