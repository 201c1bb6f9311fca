"""Experiments, their analysis epochs, arms and arm status history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.models.base import default_now


class Experiment(SQLModel, table=True):
    __tablename__ = "experiment"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    channel: str = Field(default="email", max_length=32)
    status: str = Field(default="running", max_length=16)
    primary_metric: str = Field(default="click", max_length=32)
    conversion_name: str | None = Field(default=None, max_length=64)
    exposure_event: str = Field(default="decision", max_length=16)
    attribution_window_hours: float = 168.0
    guardrails: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    exploration_share: float = 0.10
    min_exposures: int = 500
    min_successes: int = 5
    max_live_arms: int = 8
    segment_attribute: str | None = Field(default=None, max_length=64)
    half_life_hours: float | None = None
    brief: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    content_rules: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    auto_approve: bool = False
    auto_retire: bool = False
    loop_cadence_hours: float | None = None
    # The learnings library it reads and feeds (None: the default library).
    library_id: int | None = Field(default=None, foreign_key="library.id", index=True)
    # Share of keyed units held out of the loop: always the control arm, never explored on.
    holdout_share: float = 0.0
    epoch: int = 1
    created_at: datetime = Field(default_factory=default_now)
    updated_at: datetime = Field(default_factory=default_now)


class ExperimentEpoch(SQLModel, table=True):
    """An analysis epoch: what was measured, from when. The policy learns from the newest only."""

    __tablename__ = "experiment_epoch"

    experiment_id: int = Field(foreign_key="experiment.id", primary_key=True)
    epoch: int = Field(primary_key=True)
    started_at: datetime = Field(default_factory=default_now)
    measured: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class Arm(SQLModel, table=True):
    __tablename__ = "arm"

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    content: str = Field(sa_column=Column(Text, nullable=False))
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    origin: str = Field(default="human", max_length=16)
    loop_run_id: int | None = Field(default=None)
    parent_id: int | None = Field(default=None, foreign_key="arm.id")
    is_control: bool = False
    status: str = Field(default="live", max_length=16)
    created_at: datetime = Field(default_factory=default_now)


class ArmStatusChange(SQLModel, table=True):
    __tablename__ = "arm_status_change"

    id: int | None = Field(default=None, primary_key=True)
    arm_id: int = Field(foreign_key="arm.id", index=True)
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str = Field(max_length=16)
    actor: str = Field(max_length=120)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    evidence: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=default_now)


class Dispatch(SQLModel, table=True):
    """A provider's message id and the decisions it carried (Braze sends extras once)."""

    __tablename__ = "dispatch"
    __table_args__ = (UniqueConstraint("provider", "dispatch_id"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    dispatch_id: str = Field(max_length=200)
    decision_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=default_now)


class ExperimentChange(SQLModel, table=True):
    """Who changed an experiment and what: created, settings (brief, rules, ...), status."""

    __tablename__ = "experiment_change"

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    action: str = Field(max_length=16)  # created, settings, pause, resume, archive
    actor: str = Field(max_length=120)
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=default_now)
