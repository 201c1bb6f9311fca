"""API key management models."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    scopes: list[Literal["decide", "ingest", "review", "admin"]] = Field(
        min_length=1, max_length=4, description="decide, ingest, review, admin"
    )


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself; shown once, stored only as a digest.")


class KeyList(BaseModel):
    keys: list[KeyOut]
