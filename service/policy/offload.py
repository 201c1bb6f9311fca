"""Snapshot computations in a child process, so the refresher never stalls /choose.

A computation (delay fit, posteriors, allocation) is tens of milliseconds of CPU, most of it
holding the interpreter lock; in the serving process every request waits behind it. The
refresher's own thread reads the inputs (database I/O, which releases the lock), sends them
to one child process (``python -m service.policy.offload``) over a pipe, and writes what
comes back: the serving process only pickles the inputs and the snapshot. Direct calls
(``publish`` from a request, the CLI, tests and the simulator) keep computing in-process.

The child is a plain interpreter running this module (not a multiprocessing spawn, which
re-imports the parent's main module: uvicorn's, gunicorn's or a test runner's).
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import threading
from datetime import datetime
from typing import IO, Any

import numpy as np

from service.policy.compute import PolicyInputs, compute_snapshot
from service.policy.snapshot import Snapshot

log = logging.getLogger("banditloop.policy")


class ComputeProcess:
    """One child that computes snapshots; started on first use, restarted if it died,
    stopped with the refresher."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def __call__(
        self, inputs: PolicyInputs, *, now: datetime, rng: np.random.Generator
    ) -> Snapshot:
        with self._lock:
            child = self._running()
            assert child.stdin is not None
            assert child.stdout is not None
            try:
                pickle.dump((inputs, now, rng), child.stdin, pickle.HIGHEST_PROTOCOL)
                child.stdin.flush()
                ok, value = pickle.load(child.stdout)
            except (OSError, EOFError, pickle.UnpicklingError):
                log.warning("policy compute process died; a new one starts on the next call")
                self._stop_child()
                raise
        if not ok:
            raise value
        assert isinstance(value, Snapshot)
        return value

    def start(self) -> None:
        """Start the child now rather than on the first computation. That one runs inside
        the refresher's transaction, which on SQLite holds the write lock: a child started
        then (an interpreter importing numpy and scipy, seconds on a busy host) held every
        decision-log flush back for as long, and the backlog came out as one long flush."""
        with self._lock:
            self._running()

    def _running(self) -> subprocess.Popen[bytes]:
        if self._child is None or self._child.poll() is not None:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "service.policy.offload"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        return self._child

    def stop(self) -> None:
        with self._lock:
            self._stop_child()

    def _stop_child(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if child.stdin is not None:
            child.stdin.close()  # end of input: the child's loop ends
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The child's loop: (inputs, now, rng) in, (True, snapshot) or (False, error) out."""
    while True:
        try:
            inputs, now, rng = pickle.load(source)
        except EOFError:
            return
        answer: tuple[bool, Any]
        try:
            answer = (True, compute_snapshot(inputs, now=now, rng=rng))
        except Exception as exc:
            answer = (False, exc)
        pickle.dump(answer, sink, pickle.HIGHEST_PROTOCOL)
        sink.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
