"""Decisions, outcome events, statistics buckets and raw payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.models.base import default_now


class Decision(SQLModel, table=True):
    __tablename__ = "decision"
    __table_args__ = (
        UniqueConstraint("experiment_id", "unit_hash", "send_id"),
        Index("ix_decision_experiment_created", "experiment_id", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=96)
    experiment_id: int = Field(foreign_key="experiment.id")
    epoch: int
    arm_id: int
    segment: str = Field(default="", max_length=128)
    unit_hash: str | None = Field(default=None, max_length=64, index=True)
    send_id: str | None = Field(default=None, max_length=128)
    propensity: float
    explored: bool = False
    # A holdout unit's decision: the control arm with propensity 1, outside the policy.
    holdout: bool = False
    policy_version: int
    created_at: datetime = Field(default_factory=default_now)


class RawPayload(SQLModel, table=True):
    __tablename__ = "raw_payload"

    id: int | None = Field(default=None, sa_column_kwargs={"autoincrement": True}, primary_key=True)
    source: str = Field(max_length=32, index=True)
    received_at: datetime = Field(default_factory=default_now, index=True)
    headers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class OutcomeEvent(SQLModel, table=True):
    __tablename__ = "outcome_event"
    __table_args__ = (
        UniqueConstraint("provider", "event_key", "decision_id"),
        Index("ix_outcome_event_decision", "decision_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    event_key: str = Field(max_length=200)
    decision_id: str = Field(max_length=96)
    experiment_id: int | None = None
    arm_id: int | None = None
    epoch: int | None = None
    segment: str | None = Field(default=None, max_length=128)
    type: str = Field(max_length=32)
    provider_type: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=64)
    value: float | None = None
    machine: bool = False
    occurred_at: datetime
    received_at: datetime = Field(default_factory=default_now)
    raw_payload_id: int | None = None
    outcome: str = Field(default="accepted", max_length=16)


class FirstEvent(SQLModel, table=True):
    """The first counted event of a metric for a decision: what makes a success count once."""

    __tablename__ = "first_event"

    decision_id: str = Field(primary_key=True, max_length=96)
    metric: str = Field(primary_key=True, max_length=80)
    event_id: int | None = None
    occurred_at: datetime


class StatBucket(SQLModel, table=True):
    """Counts per experiment, epoch, segment, arm, exposure hour and metric.

    Metrics: ``exposure``, each event type, and ``conversion:<name>``. Buckets are keyed by
    the *exposure* hour (cohorts), which is what the delay correction and decay need.
    """

    __tablename__ = "stat_bucket"

    experiment_id: int = Field(primary_key=True)
    epoch: int = Field(primary_key=True)
    segment: str = Field(primary_key=True, max_length=128)
    arm_id: int = Field(primary_key=True)
    hour: datetime = Field(primary_key=True)
    metric: str = Field(primary_key=True, max_length=80)
    count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    value_sum: float = 0.0
    # Exposure rows: summed seconds from ``hour`` to each exposure's decision, so a cohort's
    # mean age is known to the second. NULL where unknown (rows from before revision 0003).
    offset_seconds_sum: float | None = None
    # Exposure rows: the summed squares of those seconds, so the spread of the cohort's ages is
    # known too (F of a cohort is the mean of F over its ages, not F at their mean). NULL
    # where unknown (rows from before revision 0007): the cohort counts as one age.
    offset_seconds_sq_sum: float | None = None


class StatTotal(SQLModel, table=True):
    """One row per experiment and epoch, bumped by every write of its statistics buckets.

    The refresher asks each pass whether any running experiment's evidence changed; reading
    these rows answers that for a thousand experiments at the cost of a thousand rows,
    where an aggregate over the buckets read every hour of every arm's history.
    """

    __tablename__ = "stat_total"

    experiment_id: int = Field(primary_key=True)
    epoch: int = Field(primary_key=True)
    # How many writes have changed this epoch's buckets (a rebuild counts as one).
    version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    # The summed counts of every bucket: for a reader's eyes.
    count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class DeadLetter(SQLModel, table=True):
    __tablename__ = "dead_letter"

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32, index=True)
    raw_payload_id: int | None = None
    reason: str = Field(sa_column=Column(Text, nullable=False))
    event: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=default_now)
