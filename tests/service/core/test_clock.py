"""The clock is an argument: a unit of work opened on a ManualClock dates what it writes by
that clock, and the container hands its clock to what reads the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.core.clock import ManualClock
from service.core.runtime import Runtime
from service.core.sessions import now, unit_of_work
from service.core.settings import Settings
from service.models import ApiKey, as_utc

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_rows_nobody_dated_take_the_unit_of_works_time(runtime: Runtime):
    clock = ManualClock(START)
    given = START - timedelta(days=3)
    with unit_of_work(runtime.engine, clock=clock) as session:
        assert now(session) == START
        undated = ApiKey(name="undated", prefix="p1", digest="1" * 64, scopes="admin")
        dated = ApiKey(name="dated", prefix="p2", digest="2" * 64, scopes="admin", created_at=given)
        session.add_all([undated, dated])
        session.flush()
        clock.advance(hours=1)
    with unit_of_work(runtime.engine) as session:
        rows = {k.name: as_utc(k.created_at) for k in session.exec(ApiKey.__table__.select())}
    assert rows == {"undated": START, "dated": given}


def test_the_container_hands_its_clock_on(settings: Settings, engine_for):
    clock = ManualClock(START)
    runtime = Runtime(settings, engine=engine_for, clock=clock)
    with runtime.unit_of_work() as session:
        assert now(session) == START
    assert runtime.loop_scheduler.due() == []  # reads the time by the same clock
    _row, _raw = runtime.api_keys.create(name="on the clock", scopes=["admin"])
    (row,) = [k for k in runtime.api_keys.list() if k.name == "on the clock"]
    assert as_utc(row.created_at) == START
    # A core INSERT (insert-or-ignore) is dated by the clock too, not by the column default.
    assert runtime.api_keys.bootstrap("bl_bootstrap_on_the_clock_0123456789") is False
    with runtime.unit_of_work() as session:
        session.exec(ApiKey.__table__.delete())
    assert runtime.api_keys.bootstrap("bl_bootstrap_on_the_clock_0123456789") is True
    (boot,) = runtime.api_keys.list()
    assert as_utc(boot.created_at) == START
    clock.advance(hours=2)
    revoked = runtime.api_keys.revoke(boot.id or 0)
    assert as_utc(revoked.revoked_at or START) == START + timedelta(hours=2)
