"""Per-request sessions with after-commit events (handled only once the data is durable).

Domain code records what happened as a typed event (`after_commit(session, event)`); the
request dependency, a worker's tick or the CLI opens the unit of work and handles every
event after the commit. An event with no handler is an error, not a silent skip: a hook
that nobody runs (a snapshot never installed in the cache) is a bug.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from service.db import session_scope
from service.models import PolicySnapshot
from service.notify import Notification

_EVENTS = "after_commit"


@dataclass(frozen=True)
class SnapshotPublished:
    """A new snapshot version: install it in this replica's cache at once."""

    row: PolicySnapshot


@dataclass(frozen=True)
class EventsCounted:
    """Ingested events by (type, outcome), for the events counter."""

    source: str
    outcomes: Mapping[tuple[str, str], int]


# A notification (service.notify) is sent only once what it reports is committed.
AfterCommitEvent = SnapshotPublished | EventsCounted | Notification
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


def request_session(engine: Engine, handlers: Handlers) -> Iterator[Session]:
    with session_scope(engine) as session:
        yield session
    handle(pending_events(session), handlers)


unit_of_work = contextmanager(request_session)
