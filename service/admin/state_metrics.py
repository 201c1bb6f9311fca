"""Gauges of state, read from the database when /metrics is scraped.

The counters in service/core/metrics.py see only what their own process did. What an operator
asks of state (how many proposals wait, which arms are live or suspended, how old the newest
policy snapshot is, how many loop runs failed) must include the work of every replica and of
the CLI, so it is read from the database at scrape time: four small aggregate queries on one
connection, cached for a few seconds so that several Prometheus servers or a dashboard
refresh storm do not turn into database load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from service.admin import state_repository as state_repo
from service.core import metrics
from service.core.clock import SYSTEM_CLOCK, Clock
from service.core.sessions import now as now_of
from service.core.sessions import unit_of_work
from service.core.vocabulary import SERVED_ARM_STATUSES, LoopRunStatus
from service.models.base import as_utc

log = logging.getLogger("banditloop.metrics")

# Grafana legends and alert texts show this much of an arm's text.
ARM_LABEL_CHARS = 40
# Names the collector exports (dashboards and alert rules may use them).
NAMES = (
    "banditloop_arms",
    "banditloop_arm_info",
    "banditloop_proposals_pending",
    "banditloop_policy_snapshot_age_seconds",
    "banditloop_loop_runs",
)


def arm_label(text: str, limit: int = ARM_LABEL_CHARS) -> str:
    """One line of at most `limit` characters: bounded, and readable in a legend."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class StateReading:
    arms: list[tuple[str, int, str, str]]
    pending_proposals: dict[str, int]
    loop_runs: dict[tuple[str, str], int]
    snapshot_times: dict[str, datetime]
    read_at: datetime


def read_state(engine: Engine, *, clock: Clock = SYSTEM_CLOCK) -> StateReading:
    with unit_of_work(engine, clock=clock) as session:
        return StateReading(
            arms=state_repo.arms(session),
            pending_proposals=state_repo.pending_proposals(session),
            loop_runs=state_repo.loop_runs(session),
            snapshot_times=state_repo.latest_snapshot_times(session),
            read_at=now_of(session),
        )


def families(reading: StateReading, now: datetime) -> Iterator[Metric]:
    """The metric families for one reading; ages are taken at `now`, not at the read."""
    arms = GaugeMetricFamily(
        "banditloop_arms",
        "Arms by experiment and status (live, suspended, retired, ...), from the database.",
        labels=["experiment", "status"],
    )
    info = GaugeMetricFamily(
        "banditloop_arm_info",
        "Always 1; `label` is the start of the arm's text, for legends "
        f"(at most {ARM_LABEL_CHARS} characters).",
        labels=["experiment", "arm", "label"],
    )
    counts: dict[tuple[str, str], int] = {}
    experiments: list[str] = []
    for key, arm_id, status, text in reading.arms:
        if not experiments or experiments[-1] != key:
            experiments.append(key)
        counts[(key, status)] = counts.get((key, status), 0) + 1
        info.add_metric([key, str(arm_id), arm_label(text)], 1)
    for key in experiments:  # live and suspended always present, so alerts see a zero
        for status in SERVED_ARM_STATUSES:
            counts.setdefault((key, status), 0)
    for (key, status), n in sorted(counts.items()):
        arms.add_metric([key, status], n)
    yield arms
    yield info

    pending = GaugeMetricFamily(
        "banditloop_proposals_pending",
        "Proposals awaiting review, from the database.",
        labels=["experiment"],
    )
    for key in sorted(set(experiments) | set(reading.pending_proposals)):
        pending.add_metric([key], reading.pending_proposals.get(key, 0))
    yield pending

    runs = CounterMetricFamily(
        "banditloop_loop_runs",
        "Finished loop runs by experiment and status, from the database (every replica's "
        "and the CLI's).",
        labels=["experiment", "status"],
    )
    for (key, status), n in sorted(reading.loop_runs.items()):
        # A count that falls back when the run ends is no counter.
        if status != LoopRunStatus.RUNNING:
            runs.add_metric([key, status], n)
    yield runs

    age = GaugeMetricFamily(
        "banditloop_policy_snapshot_age_seconds",
        "Seconds since the newest policy snapshot of each running experiment was written.",
        labels=["experiment"],
    )
    for key, created in sorted(reading.snapshot_times.items()):
        age.add_metric([key], max(0.0, (now - as_utc(created)).total_seconds()))
    yield age


class StateCollector(Collector):
    """A prometheus-client collector over `read_state`, cached for `cache_seconds`."""

    def __init__(
        self,
        engine: Engine,
        *,
        cache_seconds: float = 5.0,
        timer: Callable[[], float] = time.monotonic,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._engine = engine
        self._cache_seconds = cache_seconds
        self._timer = timer  # for the cache
        self._clock = clock  # for the ages
        self._lock = threading.Lock()
        self._reading: StateReading | None = None
        self._read_at = 0.0

    def reading(self) -> StateReading | None:
        with self._lock:
            fresh = self._timer() - self._read_at < self._cache_seconds
            if self._reading is None or not fresh:
                try:
                    self._reading = read_state(self._engine, clock=self._clock)
                    self._read_at = self._timer()
                except Exception:  # a scrape must never fail because the database did
                    metrics.STATE_READ_FAILURES.inc()
                    log.warning("reading state metrics failed", exc_info=True)
                    return None
            return self._reading

    def collect(self) -> Iterable[Metric]:
        reading = self.reading()
        if reading is None:
            return []
        return list(families(reading, self._clock.now()))
