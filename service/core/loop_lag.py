"""The event-loop lag probe: how late the serving process's event loop wakes from a short
sleep, as a Prometheus histogram (``banditloop_event_loop_lag_seconds``).

A request can only be answered when the loop runs. Anything that keeps it from running (a
background thread holding the interpreter lock, a garbage collection, a slow handler, the
host taking the CPU away) delays every request in flight by the same amount, and shows
here as a late wake-up. The probe sleeps ``interval`` seconds, measures how much later than
that it woke (by the monotonic clock, not the loop's cached time), and records the excess.
A pause of P ms shows as a lag between P - interval and P, so the interval (5 ms by default)
is both the resolution and the cost: about 200 wake-ups a second, a few microseconds each.

Read it beside the same probe on a bare server under the same load (``bench/choose`` does):
a shared host alone stalls any process by tens of milliseconds now and then.

Attribution: a wake-up later than ``STALL_SECONDS`` is counted in
``banditloop_event_loop_stalls_total{during}`` once for each of the service's own
background activities that ran during the late sleep (``during("decision_log")`` around
the decision log's write, the hand-over to the writer process, the policy refresher's
pass, and the garbage collector),
or ``none``. Overlap is not proof of cause, but a pause that coincides with none of them
came from elsewhere (the host, a request's own work).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from service.core import metrics

STALL_SECONDS = 0.02
LONG_SECONDS = 0.005


class Activities:
    """The background activities running now, and each one's last run that took at least
    ``LONG_SECONDS`` (a short one, such as an empty flush or a young-generation collection,
    cannot explain a stall)."""

    def __init__(self) -> None:
        self._running: dict[str, tuple[int, float]] = {}  # name: (how many, first start)
        self._ended: dict[str, float] = {}  # name: end of its last long run
        self._lock = threading.Lock()

    @contextmanager
    def during(self, name: str) -> Iterator[None]:
        self.begin(name)
        try:
            yield
        finally:
            self.end(name)

    def begin(self, name: str) -> None:
        with self._lock:
            n, started = self._running.get(name, (0, 0.0))
            self._running[name] = (n + 1, started if n else time.perf_counter())

    def end(self, name: str) -> None:
        now = time.perf_counter()
        with self._lock:
            n, started = self._running.get(name, (0, now))
            self._running[name] = (max(0, n - 1), started)
            if n <= 1 and now - started >= LONG_SECONDS:
                self._ended[name] = now

    def since(self, moment: float) -> list[str]:
        """Those running now or whose last long run ended after ``moment`` (a
        ``time.perf_counter()``)."""
        with self._lock:
            found = {name for name, (n, _) in self._running.items() if n > 0}
            found.update(name for name, ended in self._ended.items() if ended >= moment)
        if _GC.running or _GC.ended >= moment:
            found.add("gc")
        return sorted(found)


class _Collections:
    """The garbage collector's runs, recorded without a lock or any tracked allocation:
    the callback runs inside whatever allocated, possibly while a lock above is held."""

    __slots__ = ("ended", "running", "started")

    def __init__(self) -> None:
        self.running = False
        self.started = 0.0
        self.ended = -1.0

    def __call__(self, phase: str, _info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self.running, self.started = True, now
        else:
            self.running = False
            if now - self.started >= LONG_SECONDS:
                self.ended = now


_GC = _Collections()


ACTIVITIES = Activities()
during = ACTIVITIES.during


def _count_stall(activities: list[str]) -> None:
    for name in activities or ["none"]:
        metrics.EVENT_LOOP_STALLS.labels(name).inc()


async def watch_event_loop(
    interval: float,
    observe: Callable[[float], None] = metrics.EVENT_LOOP_LAG.observe,
    stalled: Callable[[list[str]], None] = _count_stall,
    activities: Activities = ACTIVITIES,
) -> None:
    """Run until cancelled: sleep ``interval`` seconds, record how late the wake-up was,
    and a stall's overlapping activities."""
    clock = time.perf_counter
    if _GC not in gc.callbacks:
        gc.callbacks.append(_GC)
    while True:
        asleep = clock()
        await asyncio.sleep(interval)
        lag = max(0.0, clock() - asleep - interval)
        observe(lag)
        if lag > STALL_SECONDS:
            stalled(activities.since(asleep))
