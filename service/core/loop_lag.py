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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from service.core import metrics


async def watch_event_loop(
    interval: float,
    observe: Callable[[float], None] = metrics.EVENT_LOOP_LAG.observe,
) -> None:
    """Run until cancelled: sleep ``interval`` seconds, record how late the wake-up was."""
    clock = time.perf_counter
    while True:
        asleep = clock()
        await asyncio.sleep(interval)
        observe(max(0.0, clock() - asleep - interval))
