"""The decision log: batched writes off the request path.

Loss window: a crash loses at most the decisions of one flush interval
(``BANDITLOOP_DECISION_FLUSH_MS``, default 200 ms); a clean shutdown (SIGTERM) flushes
everything the database will take. An event for a lost decision is kept as an orphan and
never counted.

Faults, each with its own answer (see ``service.deciding.writer``):
- a row the database refuses (e.g. a NUL on PostgreSQL) is isolated by bisection and set
  aside in the dead-letter store with its reason; every other row is written;
- while the database is down or locked (or fails in a way not about any row), everything
  is kept and retried with a growing pause
  (up to ``MAX_BACKOFF_SECONDS``), then written when it comes back. Memory is bounded: past
  ``max_pending`` decisions the oldest are dropped, counted in
  ``banditloop_decisions_dropped_total`` and logged; their events become orphans (kept,
  never counted), so a long outage costs evidence, never correctness or the process.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.core import metrics
from service.core.db import is_sqlite
from service.core.faults import describe
from service.core.loop_lag import during
from service.core.sessions import unit_of_work
from service.core.worker import PeriodicWorker
from service.deciding.records import DecisionRecord, exposure_deltas
from service.deciding.writer import Unwritten, set_aside, write_isolating
from service.measuring.orphans import resolve_orphans

__all__ = ["DecisionLog", "DecisionRecord", "exposure_deltas"]

log = logging.getLogger("banditloop.decisions")

# About 0.5 KB per pending decision: the default bound holds ~250 MB, several minutes of
# heavy traffic on one replica.
MAX_PENDING = 500_000
# Rows per transaction: a backlog after an outage is written in steps, not one statement.
CHUNK = 5_000
MAX_BACKOFF_SECONDS = 5.0


class DecisionLog:
    """Buffers unkeyed decisions and writes them, with their exposures, every interval."""

    def __init__(
        self,
        engine: Engine,
        *,
        flush_ms: int,
        max_pending: int = MAX_PENDING,
        on_flushed: Callable[[int], None] | None = None,
        show_pending: Callable[[int], None] | None = None,
    ) -> None:
        self._engine = engine
        self._interval = flush_ms / 1000
        self._delay = self._interval
        self._max_pending = max_pending
        self._pending: list[DecisionRecord] = []
        self._refused: list[tuple[DecisionRecord, str]] = []  # set aside, not yet stored
        # Ids another writer may have stored (a writer process that died unconfirmed):
        # checked before they are written, so none is stored or counted twice.
        self._maybe_stored: set[str] = set()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # Waits the current delay: the interval, or longer while the database is away.
        self.worker = PeriodicWorker(
            "decision-log", self.flush, interval=self._current_delay, log=log
        )
        self._on_flushed = on_flushed
        # Called (outside the lock) with the count held here whenever it changes; the
        # writer process shows its own total instead.
        self._show_pending = show_pending or metrics.DECISION_LOG_PENDING.set

    def start(self) -> None:
        self.worker.start()

    def _current_delay(self) -> float:
        return self._delay

    @property
    def backing_off(self) -> bool:
        """The last write found the database away: the next waits for the growing pause."""
        return self._delay > self._interval

    def append(self, records: Sequence[DecisionRecord], *, maybe_stored: bool = False) -> None:
        """Keep ``records`` for the next flush. ``maybe_stored``: they may have been written
        already (by a writer that died before confirming): those found stored are skipped."""
        with self._lock:
            if maybe_stored:
                self._maybe_stored.update(r.id for r in records)
            self._pending.extend(records)
            self._enforce_bound()
            held = len(self._pending)
        self._show_pending(held)

    def _enforce_bound(self) -> None:
        if len(self._pending) > self._max_pending:
            dropped = len(self._pending) - self._max_pending
            del self._pending[:dropped]
            metrics.DECISIONS_DROPPED.inc(dropped)
            log.error(
                "decision log over its bound of %d: dropped the %d oldest decisions "
                "(their events will be orphans)",
                self._max_pending,
                dropped,
            )

    def flush(self) -> int:
        """Write everything pending; return how many decisions were stored."""
        with self._flush_lock, during("decision_log"):
            with self._lock:
                batch, self._pending = self._pending, []
            self._store_refused()
            if not batch:
                return 0
            stored: list[DecisionRecord] = []
            resolved: Counter[str] = Counter()
            try:
                for start in range(0, len(batch), CHUNK):
                    chunk = batch[start : start + CHUNK]
                    try:
                        written = write_isolating(
                            self._engine, chunk, maybe_stored=self._maybe_stored
                        )
                    except Unwritten as exc:
                        exc.remaining.extend(batch[start + CHUNK :])
                        self._keep(exc.remaining, str(exc))
                        break
                    refused = {id(r) for r, _ in written.set_aside}
                    stored.extend(
                        r for r in chunk if id(r) not in refused and r.id not in written.already
                    )
                    if self._maybe_stored:
                        with self._lock:
                            self._maybe_stored.difference_update(r.id for r in chunk)
                    resolved.update(written.orphans)
                    self._refuse(written.set_aside)
                else:
                    self._delay = self._interval
            finally:
                self._report(stored, resolved)
            return len(stored)

    def _keep(self, remaining: list[DecisionRecord], reason: str) -> None:
        """The database is unavailable: keep the rows for the next flush, pause longer."""
        metrics.DECISION_LOG_FLUSH_FAILURES.inc()
        with self._lock:
            self._pending[:0] = remaining
            self._enforce_bound()
            held = len(self._pending)
        self._show_pending(held)
        self._delay = min(max(self._delay * 2, self._interval), MAX_BACKOFF_SECONDS)
        log.warning(
            "decision log: database unavailable (%s); %d decisions kept, next try in %.1f s",
            reason,
            len(remaining),
            self._delay,
        )

    def _refuse(self, refused: list[tuple[DecisionRecord, str]]) -> None:
        for record, reason in refused:
            metrics.DECISIONS_SET_ASIDE.inc()
            # No unit hash, send id or content: only where the row belongs and why.
            log.error(
                "decision log: set aside one decision of experiment %d, arm %d: %s",
                record.experiment_id,
                record.arm_id,
                reason,
            )
        self._refused.extend(refused)
        self._store_refused()

    def _store_refused(self) -> None:
        """Write set-aside rows to the dead-letter store (retried next flush if it is down)."""
        if not self._refused:
            return
        try:
            set_aside(self._engine, self._refused)
        except SQLAlchemyError as exc:
            log.warning("decision log: set-aside decisions not stored yet: %s", describe(exc))
            del self._refused[: max(0, len(self._refused) - self._max_pending)]
            return
        self._refused = []

    def _report(self, stored: list[DecisionRecord], resolved: Counter[str]) -> None:
        if stored and not is_sqlite(self._engine):  # one writer on SQLite: no race to close
            resolved.update(self._recheck_orphans(stored))
        if stored:
            metrics.DECISIONS_FLUSHED.inc(len(stored))
        for outcome, n in resolved.items():
            metrics.ORPHANS_RESOLVED.labels(outcome).inc(n)
        self._show_pending(self.pending)
        if stored and self._on_flushed:
            self._on_flushed(len(stored))

    def _recheck_orphans(self, stored: list[DecisionRecord]) -> Counter[str]:
        """An event committed while the flush's transaction was open was invisible to it, and
        the decision was invisible to the event's request: look again, both committed now."""
        try:
            with unit_of_work(self._engine) as session:
                return resolve_orphans(session, decisions={r.id: r for r in stored})
        except SQLAlchemyError as exc:
            log.warning("decision log: orphans not re-checked: %s", describe(exc))
            return Counter()

    def stop(self) -> None:
        """Stop the thread and flush everything still pending (clean shutdown)."""
        self.worker.stop(timeout=10)
        for _ in range(5):
            self.flush()
            with self._lock:
                if not self._pending:
                    return
        log.error("decision log: %d decisions not stored at shutdown", self.pending)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)
