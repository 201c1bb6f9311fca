"""One periodic background worker: a named thread that runs a tick every interval.

The refresher, the loop scheduler and the decision-log flusher are each one of these. A
failing tick is logged and retried after a growing pause (never ends the thread); `stop()`
sets the stop event and joins, so the container stops every worker before it disposes the
engine they use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

MAX_BACKOFF_SECONDS = 60.0


class PeriodicWorker:
    def __init__(
        self,
        name: str,
        tick: Callable[[], object],
        *,
        interval: float | Callable[[], float],
        log: logging.Logger,
        max_backoff: float = MAX_BACKOFF_SECONDS,
    ) -> None:
        self.name = name
        self._tick = tick
        # A callable interval is read before every wait (the decision log's own backoff).
        self._interval: Callable[[], float] = (
            interval if callable(interval) else _constant(float(interval))
        )
        self._log = log
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0  # consecutive failed ticks

    @property
    def stopping(self) -> bool:
        """Set once `stop()` is called: a long tick checks it between steps."""
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop waiting, let a tick in progress finish (up to ``timeout``), join."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=timeout)
            if thread.is_alive():
                self._log.error("%s did not stop within %.0f s", self.name, timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._delay()):
            try:
                self._tick()
            except Exception:
                self.failures += 1
                self._log.exception(
                    "%s failed (%d in a row; next try in %.1f s)",
                    self.name,
                    self.failures,
                    self._delay(),
                )
            else:
                self.failures = 0

    def _delay(self) -> float:
        interval = self._interval()
        if not self.failures:
            return interval
        backoff = max(interval, 0.05) * 2.0**self.failures
        return min(backoff, max(self._max_backoff, interval))


def _constant(seconds: float) -> Callable[[], float]:
    return lambda: seconds
