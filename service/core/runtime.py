"""The container: builds the process's long-lived parts, created in the app's lifespan
(or by the CLI and the simulator) and closed on shutdown.

It takes the clock and the random generator as arguments: production passes neither (the
system clock, fresh entropy); tests and the simulator pass their own, and every part that
reads the time or draws gets them from here. It opens every transaction of the workers and
the CLI through `unit_of_work()`, and stops every background worker before it disposes of
the engine it owns.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlmodel import Session

from service.admin.state_metrics import StateCollector
from service.core import metrics
from service.core.auth import ApiKeys
from service.core.clock import SYSTEM_CLOCK, Clock
from service.core.db import make_engine
from service.core.notify import Notification, Notifier
from service.core.sessions import (
    EventsCounted,
    Handlers,
    SnapshotPublished,
    UnitForgotten,
    unit_of_work,
)
from service.core.settings import Settings, parse_signing_keys
from service.core.tokens import DecisionSigner
from service.deciding.decider import Decider
from service.deciding.log import DecisionLog
from service.deciding.writer_process import WriterProcess
from service.loop.runner import LoopRunner
from service.loop.scheduler import LoopScheduler
from service.policy.loaded import LoadedPolicy, PolicyCache
from service.policy.refresher import Refresher

log = logging.getLogger("banditloop")


def signing_keys_for(settings: Settings) -> list[tuple[str, str]]:
    """Configured keys, or (embedded mode) a random key kept beside the database."""
    if settings.signing_keys:
        return parse_signing_keys(settings.signing_keys)
    if settings.mode == "production":
        raise RuntimeError("production mode needs BANDITLOOP_SIGNING_KEYS")
    folder = settings.sqlite_path.parent if settings.sqlite_path else Path("data")
    path = folder / "signing-keys"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        # Written whole under a private name, then linked into place: a process starting
        # at the same moment either links first or reads a complete file, never a torn one.
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".signing-keys-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(f"k1:{secrets.token_urlsafe(32)}\n")
            os.link(temporary, path)
            log.info("generated a decision-id signing key in %s", path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    return parse_signing_keys(path.read_text().strip())


def _count_event_metrics(event: EventsCounted) -> None:
    for (event_type, outcome), n in event.outcomes.items():
        metrics.EVENTS.labels(event.source, event_type, outcome).inc(n)


def _writer_process(settings: Settings) -> bool:
    in_memory = make_url(settings.database_url).database in (None, "", ":memory:")
    return settings.decision_writer_process and settings.run_background and not in_memory


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.settings = settings
        # An engine passed in is the caller's to dispose of (tests share one per database).
        self._owns_engine = engine is None
        self.engine = engine or make_engine(settings.database_url)
        self.clock = clock
        self.signer = DecisionSigner(signing_keys_for(settings))
        self.api_keys = ApiKeys(
            self.engine, cache_seconds=settings.api_key_cache_seconds, clock=clock
        )
        self.cache = PolicyCache()
        self.notifier = Notifier(settings)  # outgoing webhook; a no-op without a URL
        self.refresher = Refresher(
            self.engine,
            self.cache,
            interval=settings.policy_refresh_seconds,
            lease_seconds=settings.lease_seconds,
            handlers={Notification: self.notifier.send},
            clock=clock,
            compute_process=settings.policy_compute_process,
        )
        self.decision_log: DecisionLog | WriterProcess = (
            WriterProcess(
                settings.database_url, engine=self.engine, flush_ms=settings.decision_flush_ms
            )
            if _writer_process(settings)
            else DecisionLog(self.engine, flush_ms=settings.decision_flush_ms)
        )
        # Only the decider draws (the loop's statistical pass is deterministic): it gets the
        # generator as given, so a seed reproduces every decision.
        self.decider = Decider(
            signer=self.signer,
            policy_lookup=self.policy_for,
            decision_log=self.decision_log,
            engine=self.engine,
            keyed_cache_size=settings.keyed_cache_size,
            rng=rng,
            clock=clock,
        )
        # Loop runs and the LLM client; the scheduler calls the runner, never the container.
        self.loop = LoopRunner(
            self.engine,
            settings,
            notifier=self.notifier,
            handlers=self.after_commit_handlers,
            clock=clock,
        )
        self.loop_scheduler = LoopScheduler(
            self.loop.run, self.engine, interval=settings.loop_scheduler_seconds, clock=clock
        )
        self.state_metrics = StateCollector(
            self.engine, cache_seconds=settings.metrics_cache_seconds, clock=clock
        )
        self._started = False

    def after_commit_handlers(self) -> Handlers:
        return {
            SnapshotPublished: lambda event: self.refresher.install(event.row),
            EventsCounted: _count_event_metrics,
            UnitForgotten: lambda _event: self.decider.forget_keyed(),
            Notification: self.notifier.send,
        }

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A transaction on this container's engine, clock and after-commit handlers."""
        with unit_of_work(self.engine, self.after_commit_handlers(), clock=self.clock) as session:
            yield session

    def policy_for(self, key: str) -> LoadedPolicy | None:
        return self.cache.get(key) or self.refresher.load_key(key)

    def start(self) -> None:
        if self.settings.bootstrap_admin_key:
            if self.api_keys.bootstrap(self.settings.bootstrap_admin_key):
                log.info("installed BANDITLOOP_BOOTSTRAP_ADMIN_KEY as the first admin key")
        self.refresher.reload()
        self.notifier.start()
        if self.settings.run_background:
            self.decision_log.start()
            self.refresher.start()
            self.loop_scheduler.start()
        self._started = True

    def stop(self) -> None:
        """Stop every worker (the decision log flushes what is pending), then the engine."""
        self.loop_scheduler.stop()
        self.loop.close()
        self.refresher.stop()
        self.decision_log.stop()
        self.notifier.stop()
        if self._owns_engine:
            self.engine.dispose()
