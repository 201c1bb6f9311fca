"""The loop's records: learnings libraries and their learnings, loop runs and proposals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.models.base import default_now


class Library(SQLModel, table=True):
    """A learnings library that experiments share (one per brand or audience)."""

    __tablename__ = "library"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    cap: int = 20
    half_life_days: float = 60.0
    created_at: datetime = Field(default_factory=default_now)


class LearningRow(SQLModel, table=True):
    __tablename__ = "learning"
    __table_args__ = (UniqueConstraint("library_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    # The experiment whose loop run first wrote the learning.
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    library_id: int | None = Field(default=None, foreign_key="library.id", index=True)
    # The channel it was learnt on; a loop run reads the learnings of its own channel.
    channel: str | None = Field(default=None, max_length=32)
    # The learning's id within its library ("L1", "L2", ...): what prompts and the
    # proposer's operations refer to, stable across runs and experiments.
    key: str = Field(max_length=16)
    claim: str = Field(sa_column=Column(Text, nullable=False))
    evidence: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    support: int = 1
    status: str = Field(default="active", max_length=16)
    superseded_by: int | None = None
    status_reason: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=default_now)
    last_confirmed_at: datetime = Field(default_factory=default_now)
    # Where the claim held and where it failed: one entry per (experiment, segment), the
    # newest verdict, with the arms and figures behind it (variants.library.Verdict).
    holds: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    failed: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    # The arm tags the claim is about (variants.learnings.Learning.tags).
    tags: list[str] | None = Field(default=None, sa_column=Column(JSON))


class LoopRun(SQLModel, table=True):
    __tablename__ = "loop_run"

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    status: str = Field(default="running", max_length=16)
    trigger: str = Field(default="api", max_length=16)
    # Who asked for the run (the console's person or the API key's name); None when the
    # scheduler, the CLI or the simulator started it.
    actor: str | None = Field(default=None, max_length=120)
    started_at: datetime = Field(default_factory=default_now)
    finished_at: datetime | None = None
    model: str | None = Field(default=None, max_length=120)
    prompt_digest: str | None = Field(default=None, max_length=64)
    input_digest: str | None = Field(default=None, max_length=64)
    output: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    applied: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    dropped: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    error_kind: str | None = Field(default=None, max_length=32)
    requested_proposals: bool = False


class Proposal(SQLModel, table=True):
    __tablename__ = "proposal"

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    loop_run_id: int | None = Field(default=None, foreign_key="loop_run.id")
    kind: str = Field(max_length=16)
    content: str | None = Field(default=None, sa_column=Column(Text))
    edited_content: str | None = Field(default=None, sa_column=Column(Text))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    rationale: str = Field(default="", sa_column=Column(Text, nullable=False))
    tests_learning: str | None = Field(default=None, sa_column=Column(Text))
    arm_id: int | None = None
    warnings: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    status: str = Field(default="pending", max_length=16, index=True)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    decided_by: str | None = Field(default=None, max_length=120)
    decided_at: datetime | None = None
    created_at: datetime = Field(default_factory=default_now)
