"""The clock, passed in: the container holds one and hands it to whatever reads the time.

Production passes the system clock; tests and the simulator pass a `ManualClock` they move
themselves, instead of patching modules.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that stands still until moved (tests, the simulator)."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        self._now = at

    def advance(self, hours: float = 0.0, *, seconds: float = 0.0) -> None:
        self._now += timedelta(hours=hours, seconds=seconds)
