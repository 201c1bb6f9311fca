"""A decision as the log holds it before it is written, and the exposures it adds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

from service.measuring.stats_repository import Delta, StatKey, decision_exposure_deltas


class DecisionRecord(NamedTuple):
    """A named tuple: a batch makes a thousand, and a frozen dataclass's constructor (one
    ``object.__setattr__`` per field) cost about five times a tuple's; a batch builds them
    from its columns at once (``DecisionRecord._make``)."""

    id: str
    experiment_id: int
    epoch: int
    arm_id: int
    segment: str
    unit_hash: str | None
    send_id: str | None
    propensity: float
    explored: bool
    policy_version: int
    created_at: datetime
    counts_exposure: bool
    holdout: bool = False

    def row(self) -> dict[str, object]:
        return {
            "id": self.id,
            "experiment_id": self.experiment_id,
            "epoch": self.epoch,
            "arm_id": self.arm_id,
            "segment": self.segment,
            "unit_hash": self.unit_hash,
            "send_id": self.send_id,
            "propensity": self.propensity,
            "explored": self.explored,
            "holdout": self.holdout,
            "policy_version": self.policy_version,
            "created_at": self.created_at,
        }


class DecisionSink(Protocol):
    """Where the decider hands unkeyed decisions: the log, in-process or in its writer."""

    def append(self, records: Sequence[DecisionRecord]) -> None: ...


def exposure_deltas(records: Sequence[DecisionRecord]) -> dict[StatKey, Delta]:
    """Exposures per statistics row, with the seconds into the hour (and their squares) summed
    for exact ages."""
    return decision_exposure_deltas(r for r in records if r.counts_exposure)
