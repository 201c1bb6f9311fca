"""The decision log: batched writes off the request path.

Loss window: a crash loses at most the decisions of one flush interval
(``BANDITLOOP_DECISION_FLUSH_MS``, default 200 ms); a clean shutdown (SIGTERM) flushes
everything. An event for a lost decision is kept as an orphan and never counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, insert

from service import metrics
from service.db import session_scope
from service.models import Decision, hour_of
from service.policy.inputs import EXPOSURE
from service.repositories import stats as stats_repo
from service.repositories.stats import Delta, StatKey, offset_seconds

log = logging.getLogger("banditloop.decisions")

MAX_PENDING = 2_000_000


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    id: str
    experiment_id: int
    epoch: int
    arm_id: int
    segment: str
    unit_hash: str | None
    send_id: str | None
    propensity: float
    explored: bool
    policy_version: int
    created_at: datetime
    counts_exposure: bool

    def row(self) -> dict[str, object]:
        return {
            "id": self.id,
            "experiment_id": self.experiment_id,
            "epoch": self.epoch,
            "arm_id": self.arm_id,
            "segment": self.segment,
            "unit_hash": self.unit_hash,
            "send_id": self.send_id,
            "propensity": self.propensity,
            "explored": self.explored,
            "policy_version": self.policy_version,
            "created_at": self.created_at,
        }


def exposure_deltas(records: Sequence[DecisionRecord]) -> dict[StatKey, Delta]:
    deltas: dict[StatKey, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for r in records:
        if r.counts_exposure:
            key = (r.experiment_id, r.epoch, r.segment, r.arm_id, hour_of(r.created_at), EXPOSURE)
            deltas[key][0] += 1
            deltas[key][2] += offset_seconds(r.created_at)
    return {k: (int(v[0]), v[1], v[2]) for k, v in deltas.items()}


class DecisionLog:
    """Buffers unkeyed decisions and writes them, with their exposures, every interval."""

    def __init__(
        self,
        engine: Engine,
        *,
        flush_ms: int,
        on_flushed: Callable[[int], None] | None = None,
    ) -> None:
        self._engine = engine
        self._interval = flush_ms / 1000
        self._pending: list[DecisionRecord] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_flushed = on_flushed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def append(self, records: Sequence[DecisionRecord]) -> None:
        with self._lock:
            self._pending.extend(records)
            if len(self._pending) > MAX_PENDING:
                dropped = len(self._pending) - MAX_PENDING
                del self._pending[:dropped]
                log.error("decision log over capacity: dropped %d oldest decisions", dropped)
            metrics.DECISION_LOG_PENDING.set(len(self._pending))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def flush(self) -> int:
        """Write everything pending; on failure keep it for the next try."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                write_decisions(self._engine, batch)
            except Exception:
                metrics.DECISION_LOG_FAILURES.inc()
                log.exception("decision log flush failed; %d decisions kept for retry", len(batch))
                with self._lock:
                    self._pending[:0] = batch
                time.sleep(min(self._interval, 1.0))
                return 0
            metrics.DECISIONS_FLUSHED.inc(len(batch))
            with self._lock:
                metrics.DECISION_LOG_PENDING.set(len(self._pending))
            if self._on_flushed:
                self._on_flushed(len(batch))
            return len(batch)

    def stop(self) -> None:
        """Stop the thread and flush everything still pending (clean shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for _ in range(5):
            self.flush()
            with self._lock:
                if not self._pending:
                    return

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)


def write_decisions(engine: Engine, records: Sequence[DecisionRecord]) -> None:
    with session_scope(engine) as session:
        session.execute(insert(Decision), [r.row() for r in records])
        stats_repo.add_deltas(session, deltas=exposure_deltas(records))
