"""Admin operations: replay, dead letters, privacy."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from service.core.fields import UtcTime


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, max_length=32, description="api or a provider name")
    since: UtcTime | None = None
    until: UtcTime | None = None


class ReplayOut(BaseModel):
    payloads: int
    accepted: int
    duplicates: int
    ignored: int
    dead_lettered: int
    unparseable: list[int]


class DeadLetterOut(BaseModel):
    id: int
    source: str
    raw_payload_id: int | None
    reason: str
    event: str
    created_at: datetime


class DeadLetterList(BaseModel):
    dead_letters: list[DeadLetterOut]
    next_after: int | None


class UnitDeleted(BaseModel):
    decisions_unlinked: int


class RebuildOut(BaseModel):
    decisions: int
    events: int


class PurgeOut(BaseModel):
    raw_payloads_deleted: int
