"""Console sessions: a person signed in by name with a review or admin key."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from service.models.base import default_now


class ConsoleSession(SQLModel, table=True):
    """One signed-in person. The cookie holds a random token; only its SHA-256 digest is
    stored, so a copy of the database cannot be replayed as a session."""

    __tablename__ = "console_session"

    id: int | None = Field(default=None, primary_key=True)
    token_digest: str = Field(max_length=64, unique=True, index=True)
    person: str = Field(max_length=120)
    key_id: int = Field(foreign_key="api_key.id", index=True)
    created_at: datetime = Field(default_factory=default_now)
    expires_at: datetime
    ended_at: datetime | None = None
