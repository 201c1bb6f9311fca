"""The decision log's writing in a child process, fed through a pipe.

In the serving process a flush built and wrote a few hundred rows every interval while
holding the interpreter lock for much of it: a pause for every request in flight, and CPU
taken from the one thread that serves. Here the serving process only keeps the records and,
once per interval, pickles them as plain tuples and writes them to a pipe (well under a
millisecond for an interval's worth); a plain interpreter running this module
(``python -m service.deciding.writer_process``, not a multiprocessing spawn, which would
re-import uvicorn's or gunicorn's main module) holds an ordinary ``DecisionLog`` and writes
each batch as it arrives, with all of its fault handling (bisection and set-aside, keeping
rows with a growing pause while the database is away, the memory bound, the orphan
re-check).

Loss window, as stated for the in-process log: a crash of the serving process loses at most
the decisions of one flush interval (those not yet handed over); the child, seeing its
input end, writes everything it was sent and exits. A crash of the child loses what it held
(at most one interval, more while the database is away) and a new child starts on the next
hand-over. A clean shutdown hands over everything, closes the pipe and waits for the child
to write it all. Keyed decisions are not affected: they are stored on the request path.

The child's counters (stored, dropped, set aside, orphans resolved, flush failures) reach
the serving process's /metrics with each report the child sends after a flush.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from prometheus_client import Counter as PromCounter

from service.core import metrics
from service.core.worker import PeriodicWorker
from service.deciding.log import MAX_PENDING, DecisionLog
from service.deciding.records import DecisionRecord

log = logging.getLogger("banditloop.decisions")

# The child's counters mirrored into the serving process, by their metric objects.
_MIRRORED: tuple[PromCounter, ...] = (
    metrics.DECISIONS_FLUSHED,
    metrics.DECISIONS_DROPPED,
    metrics.DECISIONS_SET_ASIDE,
    metrics.ORPHANS_RESOLVED,
    metrics.DECISION_LOG_FLUSH_FAILURES,
)
STOP_TIMEOUT_SECONDS = 30.0
READY_TIMEOUT_SECONDS = 60.0


class WriterProcess:
    """The serving process's side: the interface of ``DecisionLog`` (append, flush, start,
    stop, pending), with the writing done by the child."""

    def __init__(self, database_url: str, *, flush_ms: int, max_pending: int = MAX_PENDING) -> None:
        self._config = (database_url, flush_ms, max_pending)
        self._max_pending = max_pending
        self._pending: list[DecisionRecord] = []
        self._lock = threading.Lock()
        self._pipe_lock = threading.Lock()  # one writer of the pipe at a time
        self._child: subprocess.Popen[bytes] | None = None
        self._child_pending = 0
        self._seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._waiters: dict[int, tuple[threading.Event, list[int]]] = {}
        self._tokens = itertools.count()
        self._ready = threading.Event()
        self.worker = PeriodicWorker(
            "decision-pipe", self.hand_over, interval=flush_ms / 1000, log=log
        )

    def start(self) -> None:
        """Start the child and wait until it is ready to write (its imports and engine take
        a second or two: done before serving, they neither compete with the first requests
        nor hold the first decisions back)."""
        with self._pipe_lock:
            self._running()
        if not self._ready.wait(READY_TIMEOUT_SECONDS):
            log.error("decision writer not ready within %.0f s", READY_TIMEOUT_SECONDS)
        self.worker.start()

    def append(self, records: Sequence[DecisionRecord]) -> None:
        with self._lock:
            self._pending.extend(records)
            if len(self._pending) > self._max_pending:  # the child is gone and not back
                dropped = len(self._pending) - self._max_pending
                del self._pending[:dropped]
                metrics.DECISIONS_DROPPED.inc(dropped)
                log.error("decision hand-over over its bound: dropped %d decisions", dropped)

    def hand_over(self) -> int:
        """Send everything pending to the child; return how many decisions were sent."""
        with self._pipe_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                self._send(("rows", [astuple_fast(r) for r in batch]))
            except OSError:
                with self._lock:
                    self._pending[:0] = batch
                raise
            return len(batch)

    def flush(self) -> int:
        """Hand everything over and have the child write it; return how many decisions the
        child stored since the last call (the same count ``DecisionLog.flush`` gives)."""
        try:
            self.hand_over()
        except OSError:  # the child had died: the batch is kept, a new child takes it
            self.hand_over()
        token = next(self._tokens)
        done = threading.Event()
        result: list[int] = []
        self._waiters[token] = (done, result)
        with self._pipe_lock:
            self._send(("flush", token))
        if not done.wait(STOP_TIMEOUT_SECONDS):
            log.error("decision writer did not answer a flush within %.0f s", STOP_TIMEOUT_SECONDS)
        self._waiters.pop(token, None)
        return result[0] if result else 0

    def stop(self) -> None:
        """Hand everything over, close the pipe, wait for the child to write it all."""
        self.worker.stop(timeout=10)
        try:
            self.hand_over()
        except OSError:
            log.error("decision log: %d decisions not handed over at shutdown", self.pending)
        with self._pipe_lock:
            child, self._child = self._child, None
        if child is None:
            return
        assert child.stdin is not None
        child.stdin.close()  # end of input: the child writes what it holds and exits
        try:
            child.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.error("decision writer did not finish within %.0f s", STOP_TIMEOUT_SECONDS)
            child.kill()
            child.wait()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending) + self._child_pending

    def _send(self, message: tuple[Any, ...]) -> None:
        child = self._running()
        assert child.stdin is not None
        try:
            pickle.dump(message, child.stdin, pickle.HIGHEST_PROTOCOL)
            child.stdin.flush()
        except OSError:
            log.warning("decision writer died; a new one starts on the next hand-over")
            self._child = None
            raise

    def _running(self) -> subprocess.Popen[bytes]:
        if self._child is None or self._child.poll() is not None:
            # Its counters reach /metrics through this process (``_mirror``), not through
            # prometheus-client's multiprocess files, which would count them twice.
            env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            child = subprocess.Popen(
                [sys.executable, "-m", "service.deciding.writer_process"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            assert child.stdin is not None
            pickle.dump(("config", *self._config), child.stdin, pickle.HIGHEST_PROTOCOL)
            child.stdin.flush()
            threading.Thread(
                target=self._read, args=(child,), name="decision-pipe-reader", daemon=True
            ).start()
            self._child = child
        return self._child

    def _read(self, child: subprocess.Popen[bytes]) -> None:
        """The child's reports (after each flush) and flush answers."""
        assert child.stdout is not None
        while True:
            try:
                kind, *rest = pickle.load(child.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            if kind == "ready":
                self._ready.set()
            elif kind == "report":
                pending, samples = rest
                self._child_pending = pending
                self._mirror(samples)
            elif kind == "flushed":
                token, stored = rest
                waiter = self._waiters.get(token)
                if waiter is not None:
                    waiter[1].append(stored)
                    waiter[0].set()
        child.stdout.close()
        self._ready.set()  # a child that died while starting: nobody waits for it
        for done, _ in list(self._waiters.values()):
            done.set()  # a flush waiting on a child that is gone answers 0
        self._child_pending = 0
        metrics.DECISION_LOG_PENDING.set(self.pending)

    def _mirror(self, samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> None:
        """Increase this process's counters by what the child's grew since its last report
        (a new child starts from zero again)."""
        by_name = {m._name: m for m in _MIRRORED}  # noqa: SLF001
        for (name, labels), value in samples.items():
            before = self._seen.get((name, labels), 0.0)
            grown = value - before if value >= before else value
            self._seen[(name, labels)] = value
            if grown > 0:
                counter = by_name[name]
                (counter.labels(**dict(labels)) if labels else counter).inc(grown)
        metrics.DECISION_LOG_PENDING.set(self.pending)


def astuple_fast(record: DecisionRecord) -> tuple[Any, ...]:
    """A record's fields in declaration order (``dataclasses.astuple`` deep-copies)."""
    return (
        record.id,
        record.experiment_id,
        record.epoch,
        record.arm_id,
        record.segment,
        record.unit_hash,
        record.send_id,
        record.propensity,
        record.explored,
        record.policy_version,
        record.created_at,
        record.counts_exposure,
        record.holdout,
    )


# ---------------------------------------------------------------------------------------------
# The child


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for counter in _MIRRORED:
        for family in counter.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[(counter._name, tuple(sorted(sample.labels.items())))] = sample.value  # noqa: SLF001
    return found


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The child's loop: a config, then batches of rows and flush requests, until EOF."""
    from service.core.db import make_engine

    kind, database_url, flush_ms, max_pending = pickle.load(source)
    assert kind == "config"
    engine = make_engine(database_url, pool_size=2)
    sink_lock = threading.Lock()
    stored_since = [0]

    def reply(message: tuple[Any, ...]) -> None:
        with sink_lock:
            pickle.dump(message, sink, pickle.HIGHEST_PROTOCOL)
            sink.flush()

    def flushed(n: int) -> None:
        stored_since[0] += n

    decisions = DecisionLog(engine, flush_ms=flush_ms, max_pending=max_pending, on_flushed=flushed)

    def flush() -> int:
        n = decisions.flush()
        reply(("report", decisions.pending, _samples()))
        return n

    # Retries while the database is away (the log's own growing pause); batches that
    # arrive meanwhile wait for them.
    decisions.worker = PeriodicWorker(
        "decision-writer",
        flush,
        interval=decisions._current_delay,
        log=log,  # noqa: SLF001
    )
    decisions.start()
    reply(("ready",))
    try:
        while True:
            try:
                message = pickle.load(source)
            except EOFError:
                break
            if message[0] == "rows":
                decisions.append([DecisionRecord(*row) for row in message[1]])
                if not decisions.backing_off:
                    flush()
            elif message[0] == "flush":
                flush()
                n, stored_since[0] = stored_since[0], 0
                reply(("flushed", message[1], n))
    finally:
        decisions.stop()  # writes everything held (clean shutdown, or the parent is gone)
        try:
            reply(("report", decisions.pending, _samples()))
        except OSError:
            pass
        engine.dispose()


if __name__ == "__main__":
    # The serving process decides when to stop (its pipe closes): a Ctrl-C or SIGTERM sent
    # to the whole process group must not cut the last write short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    serve(sys.stdin.buffer, sys.stdout.buffer)
