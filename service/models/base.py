"""Shared table plumbing: one metadata with a naming convention, UTC time helpers."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import MetaData
from sqlmodel import SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLModel.metadata = MetaData(naming_convention=NAMING_CONVENTION)
metadata = SQLModel.metadata


def utcnow() -> datetime:
    """Aware UTC; SQLModel's datetime columns refuse naive values."""
    return datetime.now(UTC)


class DefaultTime(datetime):
    """A row's time that nobody gave: the system clock's, until the unit of work that
    flushes the row replaces it with its own clock's (`service.core.sessions`)."""


def default_now() -> datetime:
    """Default for a row's own timestamps (created_at, started_at, ...)."""
    return DefaultTime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A datetime in UTC; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def hour_of(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)
