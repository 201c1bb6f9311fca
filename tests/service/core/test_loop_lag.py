"""The event-loop lag probe: a blocked loop shows as a late wake-up of at least the block,
and the served app exports the probe in /metrics (or not, with the probe off)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

from fastapi.testclient import TestClient

from service.core import loop_lag
from service.core.app import create_app
from service.core.loop_lag import Activities, watch_event_loop
from service.core.runtime import Runtime
from service.core.settings import Settings


def run_alone(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` on a loop of its own thread: a test earlier in the same worker (a
    browser's sync API) may have left a loop running on this one, where asyncio.run refuses."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as exc:  # re-raised below, in the test's thread
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if failures:
        raise failures[0]


def test_a_blocked_event_loop_is_recorded_as_lag() -> None:
    seen: list[float] = []

    async def scenario() -> None:
        probe = asyncio.create_task(watch_event_loop(0.005, seen.append))
        await asyncio.sleep(0.05)  # a few quiet wake-ups first
        quiet = len(seen)
        time.sleep(0.08)  # the loop is held, as a thread holding the interpreter lock would
        await asyncio.sleep(0.03)
        probe.cancel()
        assert quiet >= 1

    run_alone(scenario())
    assert all(lag >= 0 for lag in seen)
    # The wake-up that fell inside the block came at least 80 - 5 ms late.
    assert max(seen) >= 0.075


def lag_count(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("banditloop_event_loop_lag_seconds_count"):
            return float(line.split()[-1])
    raise AssertionError("no banditloop_event_loop_lag_seconds_count in /metrics")


def served_count(settings: Settings, engine_for: Any, probe_ms: float) -> float:
    """The probe's count in /metrics across 0.2 s of a served app's life."""
    runtime = Runtime(
        settings.model_copy(update={"event_loop_probe_ms": probe_ms}), engine=engine_for
    )  # type: ignore[arg-type]
    with TestClient(create_app(runtime=runtime)) as client:
        before = lag_count(client.get("/metrics").text)
        time.sleep(0.2)
        return lag_count(client.get("/metrics").text) - before


def test_the_served_app_exports_the_probe(settings: Settings, engine_for: Any) -> None:
    assert served_count(settings, engine_for, 5) >= 5  # about 40 wake-ups in 0.2 s
    assert served_count(settings, engine_for, 0) == 0  # off


def test_a_stall_is_attributed_to_the_long_activities_that_overlapped_it() -> None:
    activities = Activities()
    stalls: list[list[str]] = []

    async def scenario() -> None:
        probe = asyncio.create_task(
            watch_event_loop(0.005, lambda _lag: None, stalls.append, activities)
        )
        await asyncio.sleep(0.03)
        with activities.during("refresh"):  # short: cannot explain a stall
            pass
        with activities.during("decision_log"):
            time.sleep(0.06)  # the loop held while the activity runs
        await asyncio.sleep(0.03)
        time.sleep(0.06)  # held by nothing the service names
        await asyncio.sleep(0.03)
        probe.cancel()

    run_alone(scenario())
    # (The host may add stalls of its own: look for ours, in order.)
    ours = stalls.index(["decision_log"])
    assert [] in stalls[ours + 1 :]  # the second block: none of ours
    assert all("refresh" not in names for names in stalls)


def test_the_policy_refresh_is_an_activity_the_stall_counter_names(
    runtime: Runtime, monkeypatch: Any
) -> None:
    """A refresher pass runs in the serving process beside the event loop: a stall it
    overlaps is counted under ``policy_refresh``, not ``none``."""
    seen: list[list[str]] = []
    recompute = runtime.refresher.recompute_all

    def watched(**kwargs: Any) -> int:
        seen.append(loop_lag.ACTIVITIES.since(float("inf")))  # running now
        time.sleep(0.01)  # long enough to explain a stall after it ends
        return recompute(**kwargs)

    monkeypatch.setattr(runtime.refresher, "recompute_all", watched)
    before = time.perf_counter()
    runtime.refresher.tick()
    assert seen
    assert "policy_refresh" in seen[0]
    assert "policy_refresh" in loop_lag.ACTIVITIES.since(before)
