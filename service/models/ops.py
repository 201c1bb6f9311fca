"""Operational tables: API keys, policy snapshots and leases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.models.base import default_now


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    prefix: str = Field(max_length=16)
    digest: str = Field(max_length=64, unique=True, index=True)
    scopes: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=default_now)
    revoked_at: datetime | None = None


class PolicySnapshot(SQLModel, table=True):
    __tablename__ = "policy_snapshot"
    __table_args__ = (UniqueConstraint("experiment_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    version: int
    epoch: int
    created_at: datetime = Field(default_factory=default_now)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class Lease(SQLModel, table=True):
    __tablename__ = "lease"

    name: str = Field(primary_key=True, max_length=120)
    holder: str = Field(max_length=120)
    expires_at: datetime
