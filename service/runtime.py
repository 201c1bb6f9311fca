"""The process's long-lived parts, created in the app's lifespan and closed on shutdown."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from pathlib import Path

from sqlalchemy import Engine

from service import metrics
from service.auth import ApiKeys
from service.db import make_engine
from service.decisions.decider import Decider
from service.decisions.log import DecisionLog
from service.loop.runner import LoopRunner
from service.notify import Notification, Notifier
from service.policy.loaded import LoadedPolicy, PolicyCache
from service.policy.refresher import Refresher
from service.sessions import EventsCounted, Handlers, SnapshotPublished
from service.settings import Settings, parse_signing_keys
from service.state_metrics import StateCollector
from service.tokens import DecisionSigner

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


class Runtime:
    def __init__(self, settings: Settings, *, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database_url)
        self.signer = DecisionSigner(signing_keys_for(settings))
        self.api_keys = ApiKeys(self.engine, cache_seconds=settings.api_key_cache_seconds)
        self.cache = PolicyCache()
        self.notifier = Notifier(settings)  # outgoing webhook; a no-op without a URL
        self.refresher = Refresher(
            self.engine,
            self.cache,
            interval=settings.policy_refresh_seconds,
            lease_seconds=settings.lease_seconds,
            handlers={Notification: self.notifier.send},
            compute_process=settings.policy_compute_process,
        )
        self.decision_log = DecisionLog(self.engine, flush_ms=settings.decision_flush_ms)
        self.decider = Decider(
            signer=self.signer,
            policy_lookup=self.policy_for,
            decision_log=self.decision_log,
            engine=self.engine,
            keyed_cache_size=settings.keyed_cache_size,
        )
        self.loop = LoopRunner(self)  # loop runs, the LLM client and the loop scheduler
        self.state_metrics = StateCollector(
            self.engine, cache_seconds=settings.metrics_cache_seconds
        )
        self._started = False

    def after_commit_handlers(self) -> Handlers:
        return {
            SnapshotPublished: lambda event: self.refresher.install(event.row),
            EventsCounted: _count_event_metrics,
            Notification: self.notifier.send,
        }

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
            self.loop.start()
        self._started = True

    def stop(self) -> None:
        self.loop.stop()
        self.refresher.stop()
        self.decision_log.stop()
        self.notifier.stop()
        self.engine.dispose()
