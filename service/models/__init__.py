"""SQLModel tables. The schema itself only ever comes from the Alembic migrations."""

from service.models.base import as_utc, hour_of, metadata, utcnow
from service.models.console import ConsoleSession
from service.models.decisions import (
    DeadLetter,
    Decision,
    FirstEvent,
    OutcomeEvent,
    RawPayload,
    StatBucket,
    StatTotal,
)
from service.models.experiments import (
    Arm,
    ArmStatusChange,
    Dispatch,
    Experiment,
    ExperimentChange,
    ExperimentEpoch,
)
from service.models.loop import LearningRow, Library, LoopRun, Proposal
from service.models.ops import ApiKey, Lease, PolicySnapshot

__all__ = [
    "ApiKey",
    "Arm",
    "ArmStatusChange",
    "ConsoleSession",
    "DeadLetter",
    "Decision",
    "Dispatch",
    "Experiment",
    "ExperimentChange",
    "ExperimentEpoch",
    "FirstEvent",
    "Lease",
    "LearningRow",
    "Library",
    "LoopRun",
    "OutcomeEvent",
    "PolicySnapshot",
    "Proposal",
    "RawPayload",
    "StatBucket",
    "StatTotal",
    "as_utc",
    "hour_of",
    "metadata",
    "utcnow",
]
