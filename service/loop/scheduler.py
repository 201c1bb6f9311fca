"""Runs each running experiment's loop on its `loop_cadence_hours`, in a periodic worker.

Every replica runs a scheduler; the per-experiment loop lease decides which one does a
given run, so a due experiment is run once however many replicas notice it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from service.core.clock import SYSTEM_CLOCK, Clock
from service.core.errors import Conflict
from service.core.sessions import unit_of_work
from service.core.vocabulary import ExperimentStatus
from service.core.worker import PeriodicWorker
from service.experiments import repository as experiments_repo
from service.loop import repository as loop_repo
from service.models import LoopRun, as_utc

# Runs one experiment's loop by key (`LoopRunner.run`); raises Conflict when another
# replica holds its lease.
RunLoop = Callable[..., LoopRun]

log = logging.getLogger("banditloop.loop")


class LoopScheduler:
    def __init__(
        self, run: RunLoop, engine: Engine, *, interval: float, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._run = run
        self._engine = engine
        self._clock = clock
        self.worker = PeriodicWorker("loop-scheduler", self.tick, interval=interval, log=log)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop(timeout=30)

    def due(self, now: datetime | None = None) -> list[str]:
        """Keys of running experiments with a cadence whose last run started a cadence ago
        (or that never ran)."""
        now = now or self._clock.now()
        with unit_of_work(self._engine, clock=self._clock) as session:
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
            if self.worker.stopping:
                break
            try:
                runs.append(self._run(key, trigger="schedule", now=now))
            except Conflict:
                continue  # another replica is on it
        return runs


def running_keys(session: Session) -> list[str]:
    """Keys of every running experiment (what `banditloop loop run` runs)."""
    return [e.key for e in experiments_repo.list_all(session, status=ExperimentStatus.RUNNING)]
