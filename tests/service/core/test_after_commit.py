"""After-commit events are typed and never skipped: an event nobody handles is an error,
and the demo's new experiment is served from the cache at once (its hook used to be dropped)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlmodel import select

from service.core.demo import DEMO_KEY, ensure_demo
from service.core.runtime import Runtime
from service.core.sessions import UnhandledEvent, after_commit, unit_of_work
from service.models import ApiKey


@dataclass(frozen=True)
class Unknown:
    value: int


def test_an_event_without_a_handler_is_an_error_after_the_commit(runtime: Runtime):
    with pytest.raises(UnhandledEvent, match="Unknown"):  # noqa: PT012 - the commit is the point
        with unit_of_work(runtime.engine, runtime.after_commit_handlers()) as session:
            after_commit(session, Unknown(1))  # type: ignore[arg-type]
            session.add(ApiKey(name="kept", prefix="p", digest="d" * 64, scopes="admin"))
    # The data was committed before the handlers ran.
    with unit_of_work(runtime.engine, {}) as session:
        assert session.exec(select(ApiKey).where(ApiKey.name == "kept")).first() is not None


def test_the_demo_experiment_is_in_the_cache_without_a_reload(runtime: Runtime):
    assert runtime.cache.get(DEMO_KEY) is None
    ensure_demo(runtime)
    policy = runtime.cache.get(DEMO_KEY)
    assert policy is not None
    assert policy.servable
