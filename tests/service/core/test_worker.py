"""The periodic worker: ticks on its interval, survives a failing tick with a growing pause,
stops at once; the container stops every worker before it disposes of its engine."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from service.core.runtime import Runtime
from service.core.settings import Settings
from service.core.worker import PeriodicWorker

log = logging.getLogger("tests.worker")


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_ticks_until_stopped_and_stops_within_a_tick():
    ticks = []
    worker = PeriodicWorker("ticker", lambda: ticks.append(1), interval=0.01, log=log)
    worker.start()
    wait_for(lambda: len(ticks) >= 3)
    assert worker.running
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < 1.0
    assert not worker.running
    after = len(ticks)
    time.sleep(0.05)
    assert len(ticks) == after


def test_a_failing_tick_is_logged_and_retried_later_each_time(caplog: pytest.LogCaptureFixture):
    calls: list[float] = []

    def failing() -> None:
        calls.append(time.monotonic())
        if len(calls) <= 3:
            raise RuntimeError("database away")

    worker = PeriodicWorker("flaky", failing, interval=0.02, log=log, max_backoff=10)
    with caplog.at_level(logging.ERROR, logger="tests.worker"):
        worker.start()
        wait_for(lambda: len(calls) >= 5)
        worker.stop()
    failures = [r for r in caplog.records if "flaky failed" in r.getMessage()]
    assert [r.getMessage().split("(")[1].split(" in")[0] for r in failures] == ["1", "2", "3"]
    assert all(r.exc_info is not None for r in failures)
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    # 0.04, 0.08, 0.16 s after the failures, then back to the interval after a success
    assert gaps[0] >= 0.04
    assert gaps[1] >= 0.08
    assert gaps[2] >= 0.16
    assert worker.failures == 0


def test_the_pause_is_bounded_and_read_from_a_callable_interval():
    delay = [0.5]
    worker = PeriodicWorker("bounded", lambda: None, interval=lambda: delay[0], log=log)
    assert worker._delay() == 0.5
    delay[0] = 2.0
    assert worker._delay() == 2.0
    worker.failures = 10
    assert worker._delay() == 60.0  # the ceiling, however many failures


def test_stop_waits_for_a_tick_in_progress():
    inside, release, done = threading.Event(), threading.Event(), []

    def slow() -> None:
        inside.set()
        release.wait(5)
        done.append(1)

    worker = PeriodicWorker("slow", slow, interval=0.01, log=log)
    worker.start()
    assert inside.wait(5)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    time.sleep(0.05)
    assert stopper.is_alive()  # still joining the tick
    release.set()
    stopper.join(5)
    assert done == [1]
    assert worker.stopping


def test_the_container_stops_every_worker_and_keeps_an_engine_it_was_given(
    settings: Settings, engine_for
):
    background = Runtime(
        settings.model_copy(
            update={
                "run_background": True,
                "decision_flush_ms": 20,
                "policy_refresh_seconds": 0.02,
                "loop_scheduler_seconds": 0.02,
            }
        ),
        engine=engine_for,
    )
    workers = [
        background.refresher.worker,
        background.loop_scheduler.worker,
        background.decision_log.worker,
    ]
    background.start()
    assert all(w.running for w in workers)
    background.stop()
    assert not any(w.running for w in workers)
    with engine_for.connect() as connection:  # the shared engine is still usable
        assert connection.exec_driver_sql("SELECT 1").scalar() == 1


def test_the_container_disposes_of_an_engine_it_made(settings: Settings):
    owned = Runtime(settings)
    owned.start()
    pool = owned.engine.pool
    owned.stop()
    assert owned.engine.pool is not pool  # disposed: a fresh pool replaced the old one
