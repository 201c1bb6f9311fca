"""The decision log's writing in a child process, fed through a pipe, with backpressure.

In the serving process a flush built and wrote a few hundred rows every interval while
holding the interpreter lock for much of it: a pause for every request in flight, and CPU
taken from the one thread that serves. Here the serving process only keeps the records and,
once per interval, pickles them as plain tuples and writes them to a pipe (well under a
millisecond for an interval's worth); a plain interpreter running this module
(``python -m service.deciding.writer_process``, not a multiprocessing spawn, which would
re-import uvicorn's or gunicorn's main module) holds an ordinary ``DecisionLog`` and writes
each batch as it arrives, with all of its fault handling (bisection and set-aside, keeping
rows with a growing pause while the database is away, the orphan re-check).

Backpressure: every batch handed over carries a sequence number and stays in the serving
process until the child confirms it written (``written``, sent once the child holds
nothing unwritten). At most ``max_unconfirmed`` batches (default one: the batch being
written) are out at a time; when the child is still busy with them at the next hand-over,
the serving process writes that interval's batch itself (an in-process ``DecisionLog``,
counted in ``banditloop_decision_writer_in_process_total{reason="behind"}``) instead of
queueing it. A hand-over is due one interval after the oldest pending decision; when it is
more than two intervals late (its thread still writing here), each request's decisions
wait for it, at most one interval (``banditloop_decision_writer_wait_seconds_total``). So a
writer that falls behind slows the serving process down, as the in-process log always did,
rather than piling up a backlog.

Loss window, as stated for the in-process log: a crash of the serving process loses at
most the decisions not yet handed over (one flush interval; the child, seeing its input
end, writes everything it was sent and exits). A crash of the child loses nothing: its
unconfirmed batches are written by the serving process (``reason="writer_gone"``), each id
first looked up so that what the child had already stored is neither stored nor counted
twice, and a new child starts on the next hand-over. A crash of both loses at most one
interval plus the one batch being written, as a crash of the in-process log mid-flush
does. A clean shutdown hands over everything, closes the pipe, waits for the child to
write it all, and writes itself whatever the child did not confirm. Keyed decisions are
not affected: they are stored on the request path.

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
import time
from collections.abc import Sequence
from typing import IO, Any

from prometheus_client import Counter as PromCounter
from sqlalchemy import Engine

from service.core import metrics
from service.core.loop_lag import during
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
# Batches handed over and not yet confirmed written: one, the batch the child is writing,
# so that what a crash can lose is what the in-process log's can (one interval pending, one
# being written).
MAX_UNCONFIRMED = 1
# A hand-over later than this many intervals (its thread still writing an earlier batch
# here) makes the request path wait for it, up to one interval per append: serving slows
# down to what the writing absorbs, with pauses no longer than an interval.
LATE_INTERVALS = 2


class WriterProcess:
    """The serving process's side: the interface of ``DecisionLog`` (append, flush, start,
    stop, pending), with the writing done by the child, or here when the child is behind or
    gone."""

    def __init__(
        self,
        database_url: str,
        *,
        engine: Engine,
        flush_ms: int,
        max_pending: int = MAX_PENDING,
        max_unconfirmed: int = MAX_UNCONFIRMED,
    ) -> None:
        self._config = (database_url, flush_ms, max_pending)
        self._max_pending = max_pending
        self._max_unconfirmed = max_unconfirmed
        self._pending: list[DecisionRecord] = []
        self._pending_since: float | None = None  # monotonic time of the oldest pending
        self._interval = flush_ms / 1000
        # Handed over, not yet confirmed written, by sequence number (ascending).
        self._unconfirmed: dict[int, list[DecisionRecord]] = {}
        self._lock = threading.Lock()
        self._handed = threading.Condition(self._lock)  # notified at each hand-over
        self._pipe_lock = threading.Lock()  # one writer of the pipe at a time
        self._child: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        # Flushes waiting for the child they were sent to.
        self._waiters: dict[int, tuple[threading.Event, list[int], subprocess.Popen[bytes]]] = {}
        self._tokens = itertools.count()
        self._sequence = itertools.count(1)
        self._ready = threading.Event()
        self._stored_here = 0  # stored by the in-process log since the last flush()
        # Writes what the child cannot take now (behind, or gone); its own worker retries
        # with the log's growing pause while the database is away.
        self.in_process = DecisionLog(
            engine,
            flush_ms=flush_ms,
            max_pending=max_pending,
            on_flushed=self._count_here,
            show_pending=lambda _held: metrics.DECISION_LOG_PENDING.set(self.pending),
        )
        self.worker = PeriodicWorker(
            "decision-pipe", self.hand_over, interval=self._until_hand_over, log=log
        )

    def start(self) -> None:
        """Start the child and wait until it is ready to write (its imports and engine take
        a second or two: done before serving, they neither compete with the first requests
        nor hold the first decisions back)."""
        with self._pipe_lock:
            self._running()
        if not self._ready.wait(READY_TIMEOUT_SECONDS):
            log.error("decision writer not ready within %.0f s", READY_TIMEOUT_SECONDS)
        self.in_process.start()
        self.worker.start()

    def append(self, records: Sequence[DecisionRecord]) -> None:
        """Keep ``records`` for the next hand-over. If that hand-over is late (the hand-over
        thread is writing an earlier batch here because the writer is behind), wait for it:
        the serving path slows down instead of the backlog growing."""
        with self._lock:
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            self._pending.extend(records)
            if len(self._pending) > self._max_pending:  # hand-overs stopped (never in serving)
                dropped = len(self._pending) - self._max_pending
                del self._pending[:dropped]
                metrics.DECISIONS_DROPPED.inc(dropped)
                log.error("decision hand-over over its bound: dropped %d decisions", dropped)
            if self.worker.running:
                self._wait_if_late()

    def _wait_if_late(self) -> None:
        """Called with the lock held: if the pending decisions have waited more than
        ``LATE_INTERVALS`` intervals, wait until they are handed over, at most one interval
        per append. Under overload every append waits in turn, so intake falls to what the
        writing absorbs, at the price of pauses (``banditloop_decision_writer_wait_seconds``
        and the event-loop lag show them)."""
        since = self._pending_since
        late = LATE_INTERVALS * self._interval
        if since is None or time.monotonic() - since <= late:
            return
        started = time.monotonic()
        deadline = started + self._interval
        while self._pending_since == since and time.monotonic() < deadline:
            self._handed.wait(deadline - time.monotonic())
        metrics.DECISION_WRITER_WAIT.inc(time.monotonic() - started)

    def hand_over(self) -> int:
        """Send everything pending to the child, or write it here if the child still has
        ``max_unconfirmed`` batches to write; return how many decisions were taken."""
        with self._pipe_lock, during("decision_hand_over"):
            child = self._running()  # a dead child's batches are taken back first
            metrics.DECISION_LOG_PENDING.set(self.pending)  # the most in flight: before
            with self._lock:
                batch, self._pending = self._pending, []
                self._pending_since = None
                self._handed.notify_all()
                behind = len(self._unconfirmed) >= self._max_unconfirmed
                if batch and not behind:
                    sequence = next(self._sequence)
                    self._unconfirmed[sequence] = batch
            if not batch:
                return 0
            if behind:
                self._write_here(batch, reason="behind")
                return len(batch)
            try:
                self._send(child, ("rows", sequence, [astuple_fast(r) for r in batch]))
            except OSError:  # the child died: what it did not confirm is written here
                self._take_back_if_gone()
            return len(batch)

    def flush(self) -> int:
        """Hand everything over and have it written; return how many decisions were stored
        since the last call (the same count ``DecisionLog.flush`` gives)."""
        self.hand_over()
        token = next(self._tokens)
        done = threading.Event()
        result: list[int] = []
        with self._pipe_lock:
            child = self._running()
            self._waiters[token] = (done, result, child)
            try:
                self._send(child, ("flush", token))
            except OSError:
                done.set()
        if not done.wait(STOP_TIMEOUT_SECONDS):
            log.error("decision writer did not answer a flush within %.0f s", STOP_TIMEOUT_SECONDS)
        self._waiters.pop(token, None)
        with self._pipe_lock:
            self._take_back_if_gone()
        self.in_process.flush()
        with self._lock:
            here, self._stored_here = self._stored_here, 0
        return (result[0] if result else 0) + here

    def stop(self) -> None:
        """Hand everything over, close the pipe, wait for the child to write it all; write
        here whatever it did not confirm."""
        self.worker.stop(timeout=10)
        self.hand_over()
        with self._pipe_lock:
            child, reader = self._child, self._reader
        if child is not None:
            assert child.stdin is not None
            try:
                child.stdin.close()  # end of input: the child writes what it holds and exits
            except OSError:
                pass
            try:
                child.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log.error("decision writer did not finish within %.0f s", STOP_TIMEOUT_SECONDS)
                child.kill()
                child.wait()
            if reader is not None:
                reader.join(timeout=STOP_TIMEOUT_SECONDS)  # its last confirmations read
        with self._pipe_lock:
            self._take_back_if_gone()
            self._child = None
        self.in_process.stop()

    @property
    def pending(self) -> int:
        """Decisions not yet confirmed written: waiting here, with the child, or in the
        in-process log."""
        with self._lock:
            held = len(self._pending) + sum(len(b) for b in self._unconfirmed.values())
        return held + self.in_process.pending

    @property
    def unconfirmed_batches(self) -> int:
        with self._lock:
            return len(self._unconfirmed)

    def _until_hand_over(self) -> float:
        """One interval after the oldest pending decision: at once after a hand-over that
        took longer than that (it wrote a batch here), so nothing waits two intervals."""
        since = self._pending_since
        if since is None:
            return self._interval
        return max(0.0, self._interval - (time.monotonic() - since))

    def _count_here(self, n: int) -> None:
        with self._lock:
            self._stored_here += n

    def _write_here(
        self, batch: list[DecisionRecord], *, reason: str, maybe_stored: bool = False
    ) -> None:
        """Write ``batch`` in this process now (the in-process log keeps it if the database
        is away, and its worker retries)."""
        metrics.DECISIONS_WRITTEN_IN_PROCESS.labels(reason).inc(len(batch))
        self.in_process.append(batch, maybe_stored=maybe_stored)
        if not self.in_process.backing_off:
            self.in_process.flush()

    def _take_back_if_gone(self) -> None:
        """If the child has died, write here every batch it did not confirm (looked up
        first: it may have stored some before dying). Called with the pipe lock held."""
        child = self._child
        if child is not None and child.poll() is None:
            return
        with self._lock:
            batches, self._unconfirmed = list(self._unconfirmed.values()), {}
        if child is not None:
            self._child = None
        taken = [r for b in batches for r in b]
        if taken:
            log.warning(
                "decision writer gone with %d decisions unconfirmed: written here", len(taken)
            )
            self._write_here(taken, reason="writer_gone", maybe_stored=True)

    def _send(self, child: subprocess.Popen[bytes], message: tuple[Any, ...]) -> None:
        assert child.stdin is not None
        try:
            pickle.dump(message, child.stdin, pickle.HIGHEST_PROTOCOL)
            child.stdin.flush()
        except OSError:
            log.warning("decision writer died; a new one starts on the next hand-over")
            child.kill()
            child.wait()
            raise

    def _running(self) -> subprocess.Popen[bytes]:
        """The live child, started anew if there is none (after taking back what a dead
        one did not confirm: a new child's confirmations must never cover an old batch).
        Called with the pipe lock held."""
        self._take_back_if_gone()
        if self._child is None:
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
            reader = threading.Thread(
                target=self._read, args=(child,), name="decision-pipe-reader", daemon=True
            )
            reader.start()
            self._child, self._reader = child, reader
        return self._child

    def _read(self, child: subprocess.Popen[bytes]) -> None:
        """The child's confirmations, reports (after each flush) and flush answers."""
        assert child.stdout is not None
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}  # this child's counts
        while True:
            try:
                kind, *rest = pickle.load(child.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            if kind == "ready":
                self._ready.set()
            elif kind == "written":
                (upto,) = rest
                with self._lock:
                    for sequence in [s for s in self._unconfirmed if s <= upto]:
                        del self._unconfirmed[sequence]
            elif kind == "report":
                self._mirror(rest[1], seen)
            elif kind == "flushed":
                token, stored = rest
                waiter = self._waiters.get(token)
                if waiter is not None:
                    waiter[1].append(stored)
                    waiter[0].set()
        child.stdout.close()
        self._ready.set()  # a child that died while starting: nobody waits for it
        for done, _, sent_to in list(self._waiters.values()):
            if sent_to is child:
                done.set()  # a flush waiting on a child that is gone answers 0 from it
        metrics.DECISION_LOG_PENDING.set(self.pending)

    def _mirror(
        self,
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float],
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    ) -> None:
        """Increase this process's counters by what the child's grew since its last report
        (``seen``: that child's previous report; a new child starts from zero)."""
        by_name = {m._name: m for m in _MIRRORED}  # noqa: SLF001
        for (name, labels), value in samples.items():
            grown = value - seen.get((name, labels), 0.0)
            seen[(name, labels)] = value
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
    received = [0]  # the last batch's sequence number, set once its rows are appended
    confirmed = [0]
    flushing = threading.Lock()

    def flush() -> int:
        """Write what is held; confirm every batch received before the write began once
        nothing is left unwritten (a write kept back by an outage confirms nothing)."""
        with flushing:
            upto = received[0]
            n = decisions.flush()
            if decisions.pending == 0 and upto > confirmed[0]:
                confirmed[0] = upto
                reply(("written", upto))
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
                decisions.append([DecisionRecord(*row) for row in message[2]])
                received[0] = message[1]
                if not decisions.backing_off:
                    flush()
            elif message[0] == "flush":
                flush()
                n, stored_since[0] = stored_since[0], 0
                reply(("flushed", message[1], n))
    finally:
        decisions.stop()  # writes everything held (clean shutdown, or the parent is gone)
        try:
            flush()  # confirms what the stop wrote, and reports
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
