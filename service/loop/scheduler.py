"""Runs each running experiment's loop on its `loop_cadence_hours`, in a background thread.

Every replica runs a scheduler; the per-experiment loop lease decides which one does a
given run, so a due experiment is run once however many replicas notice it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from service.db import session_scope
from service.errors import Conflict
from service.models import LoopRun, as_utc, utcnow
from service.repositories import experiments as experiments_repo
from service.repositories import loop as loop_repo
from service.vocabulary import ExperimentStatus

if TYPE_CHECKING:
    from service.loop.runner import LoopRunner

log = logging.getLogger("banditloop.loop")


class LoopScheduler:
    def __init__(self, runner: LoopRunner, engine: Engine, *, interval: float) -> None:
        self._runner = runner
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="loop-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.tick()
            except Exception:
                log.exception("loop scheduling failed")

    def due(self, now: datetime | None = None) -> list[str]:
        """Keys of running experiments with a cadence whose last run started a cadence ago
        (or that never ran)."""
        now = now or utcnow()
        with session_scope(self._engine) as session:
            experiments = [
                e
                for e in experiments_repo.list_all(session, status=ExperimentStatus.RUNNING)
                if e.loop_cadence_hours and e.id is not None
            ]
            last = loop_repo.last_started(
                session, experiment_ids=[e.id for e in experiments if e.id is not None]
            )
        keys = []
        for experiment in experiments:
            assert experiment.id is not None
            assert experiment.loop_cadence_hours is not None
            started = last.get(experiment.id)
            cadence = timedelta(hours=experiment.loop_cadence_hours)
            if started is None or now - as_utc(started) >= cadence:
                keys.append(experiment.key)
        return keys

    def tick(self, now: datetime | None = None) -> list[LoopRun]:
        runs = []
        for key in self.due(now):
            if self._stop.is_set():
                break
            try:
                runs.append(self._runner.run(key, trigger="schedule", now=now))
            except Conflict:
                continue  # another replica is on it
        return runs


def running_keys(engine: Engine) -> list[str]:
    """Keys of every running experiment (what `banditloop loop run` runs)."""
    with session_scope(engine) as session:
        return [e.key for e in experiments_repo.list_all(session, status=ExperimentStatus.RUNNING)]
