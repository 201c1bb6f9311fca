"""The unit of work: the one way a transaction is opened, with its clock and its
after-commit events (handled only once the data is durable).

Only the request dependency (`service/core/deps.py`), a worker's tick and the CLI call
`unit_of_work` (the container's `Runtime.unit_of_work()` passes its engine, handlers and
clock); domain functions take the session. The session carries the clock of whoever opened
it: domain code reads the time with `now(session)`, never the system clock. Domain code
records what happened as a typed event (`after_commit(session, event)`), handled after the
commit. An event with no handler is an error, not a silent skip: a hook that nobody runs
(a snapshot never installed in the cache) is a bug.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import event as orm_events
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from service.core.clock import SYSTEM_CLOCK, Clock
from service.core.notify import Notification
from service.models import PolicySnapshot
from service.models.base import DefaultTime

_EVENTS = "after_commit"
_CLOCK = "clock"


@dataclass(frozen=True)
class SnapshotPublished:
    """A new snapshot version: install it in this replica's cache at once."""

    row: PolicySnapshot


@dataclass(frozen=True)
class EventsCounted:
    """Ingested events by (type, outcome), for the events counter."""

    source: str
    outcomes: Mapping[tuple[str, str], int]


@dataclass(frozen=True)
class UnitForgotten:
    """A unit's decisions lost their unit: drop the keyed decisions the decider remembers."""


# A notification (service.core.notify) is sent only once what it reports is committed.
AfterCommitEvent = SnapshotPublished | EventsCounted | UnitForgotten | Notification
Handlers = Mapping[type[Any], Callable[[Any], object]]


class UnhandledEvent(LookupError):
    """An after-commit event with no handler."""


def after_commit(session: Session, event: AfterCommitEvent) -> None:
    """Ask for ``event`` to be handled after the session commits."""
    session.info.setdefault(_EVENTS, []).append(event)


def pending_events(session: Session) -> list[AfterCommitEvent]:
    events: list[AfterCommitEvent] = session.info.pop(_EVENTS, [])
    return events


def handle(events: list[AfterCommitEvent], handlers: Handlers) -> None:
    for event in events:
        handler = handlers.get(type(event))
        if handler is None:
            raise UnhandledEvent(f"no after-commit handler for {type(event).__name__}")
        handler(event)


@contextmanager
def unit_of_work(
    engine: Engine, handlers: Handlers | None = None, *, clock: Clock = SYSTEM_CLOCK
) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error, then handle the events.

    ``handlers`` maps each after-commit event type to its handler (none: an event raises
    ``UnhandledEvent``); ``clock`` is what ``now(session)`` reads inside it."""
    with Session(engine, expire_on_commit=False, info={_CLOCK: clock}) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
    handle(pending_events(session), handlers or {})


def now(session: OrmSession) -> datetime:
    """The time of this unit of work, by the clock it was opened with."""
    clock: Clock = session.info.get(_CLOCK, SYSTEM_CLOCK)
    return clock.now()


@orm_events.listens_for(Session, "before_flush")
def _stamp_new_rows(session: Session, _context: object, _instances: object) -> None:
    """A new row's timestamps that nobody gave (``DefaultTime``) are the unit of work's
    time: a row written on a simulated or frozen clock is dated by it."""
    clock: Clock | None = session.info.get(_CLOCK)
    if clock is None:
        return
    at: datetime | None = None
    for row in session.new:
        for name, value in list(vars(row).items()):
            if type(value) is DefaultTime:
                at = at or clock.now()
                setattr(row, name, at)
