"""Per-request sessions with after-commit hooks (run only once the data is durable)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from service.db import session_scope

_HOOKS = "after_commit"


def after_commit(session: Session, name: str, value: Any) -> None:
    """Ask for ``name`` to be handled with ``value`` after the session commits."""
    session.info.setdefault(_HOOKS, []).append((name, value))


Handlers = dict[str, Callable[[Any], object]]


def request_session(engine: Engine, handlers: Handlers) -> Iterator[Session]:
    with session_scope(engine) as session:
        yield session
    for name, value in session.info.pop(_HOOKS, []):
        handler = handlers.get(name)
        if handler is not None:
            handler(value)


unit_of_work = contextmanager(request_session)
