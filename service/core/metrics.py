"""Prometheus metrics, declared once. Labels are bounded by experiment and arm.

These count what this process did. Gauges of state (arms by status, pending proposals,
snapshot age, loop runs) are read from the database at scrape time instead, so that the
CLI's and other replicas' work shows: see service/admin/state_metrics.py.

With several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` switches prometheus-client
to its multiprocess mode; ``render`` then aggregates every worker's files.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.registry import Collector

# Without this every counter and histogram is exported twice, its `_created` twin holding the
# moment it was created: twice the series in Prometheus for nothing a dashboard reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

NOTIFICATIONS = Counter(
    "banditloop_notifications_total",
    "Outgoing notifications by event and outcome (delivered, refused, failed, dropped).",
    ["event", "outcome"],
)
DECISIONS = Counter(
    "banditloop_decisions_total",
    "Decisions served, by experiment, arm and whether they came from the exploration share.",
    ["experiment", "arm", "explored"],
)
FALLBACKS = Counter(
    "banditloop_fallbacks_total",
    "Decisions answered with the fallback arm (paused, archived or no live arm).",
    ["experiment", "reason"],
)
CHOOSE_LATENCY = Histogram(
    "banditloop_choose_latency_seconds",
    "Time to decide, per /choose call (a batch counts once).",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
WEBHOOK_AUTH_FAILURES = Counter(
    "banditloop_webhook_auth_failures_total",
    "Webhook requests refused for a bad or missing signature, token or password (401).",
    ["provider"],
)
DECISIONS_FLUSHED = Counter(
    "banditloop_decisions_flushed_total", "Decisions written by the decision log.", []
)
DECISION_LOG_PENDING = Gauge(
    "banditloop_decision_log_pending",
    "Decisions waiting in memory for the next flush.",
    [],
    multiprocess_mode="livesum",
)
DECISION_LOG_FLUSH_FAILURES = Counter(
    "banditloop_decision_log_flush_failures_total",
    "Failed decision log flushes (the batch is kept and retried; a crash can lose it).",
    [],
)
DECISIONS_SET_ASIDE = Counter(
    "banditloop_decisions_set_aside_total",
    "Decisions the database refused; each is kept in the dead-letter store with its reason.",
    [],
)
DECISIONS_DROPPED = Counter(
    "banditloop_decisions_dropped_total",
    "Oldest pending decisions dropped because the decision log hit its memory bound "
    "during a database outage.",
    [],
)
DECISIONS_WRITTEN_IN_PROCESS = Counter(
    "banditloop_decision_writer_in_process_total",
    "Decisions the serving process wrote itself with the writer process on, by reason: "
    "behind (the writer was still writing its last batch) or writer_gone (it died before "
    "confirming them; each is looked up first, none is stored twice).",
    ["reason"],
)
DECISION_WRITER_WAIT = Counter(
    "banditloop_decision_writer_wait_seconds_total",
    "Time requests waited for the decision hand-over (the writer process behind and the "
    "serving process writing an earlier batch itself): backpressure on the serving path.",
    [],
)
ORPHANS_RESOLVED = Counter(
    "banditloop_orphans_resolved_total",
    "Orphan events attributed once their decision was stored, by their new outcome "
    "(accepted, late, machine).",
    ["outcome"],
)
EVENTS = Counter(
    "banditloop_events_total",
    "Outcome events by provider, type and outcome "
    "(accepted, duplicate, ignored, rejected, dead_lettered, orphan, late, machine).",
    ["provider", "type", "outcome"],
)
POSTERIOR_MEAN = Gauge(
    "banditloop_arm_posterior_mean",
    "Posterior mean of the primary metric's rate, per arm (overall segment).",
    ["experiment", "arm"],
    multiprocess_mode="mostrecent",
)
PROBABILITY_BEST = Gauge(
    "banditloop_arm_probability_best",
    "Probability that the arm is best (overall segment).",
    ["experiment", "arm"],
    multiprocess_mode="mostrecent",
)
ALLOCATION = Gauge(
    "banditloop_arm_allocation_ratio",
    "Share of traffic the arm gets (overall segment).",
    ["experiment", "arm"],
    multiprocess_mode="mostrecent",
)
GUARDRAIL_BREACHED = Gauge(
    "banditloop_arm_guardrail_breached",
    "1 when a guardrail metric suspended the arm.",
    ["experiment", "arm", "metric"],
    multiprocess_mode="mostrecent",
)
SNAPSHOT_VERSION = Gauge(
    "banditloop_policy_snapshot_version",
    "Version of the policy snapshot this replica serves from.",
    ["experiment"],
    multiprocess_mode="max",
)
STATE_READ_FAILURES = Counter(
    "banditloop_state_read_failures_total",
    "Scrapes whose database read of the state gauges failed (service/admin/state_metrics.py).",
    [],
)
EVENT_LOOP_LAG = Histogram(
    "banditloop_event_loop_lag_seconds",
    "How late the serving event loop woke from the lag probe's short sleep "
    "(BANDITLOOP_EVENT_LOOP_PROBE_MS): a pause of every request in flight.",
    [],
    buckets=(
        0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
        0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
    ),
)  # fmt: skip
EVENT_LOOP_STALLS = Counter(
    "banditloop_event_loop_stalls_total",
    "Lag probe wake-ups later than 20 ms, once per background activity running during the "
    "late sleep (decision_log, decision_hand_over, policy_refresh, gc) or none.",
    ["during"],
)
LLM_LATENCY = Histogram(
    "banditloop_llm_latency_seconds",
    "LLM call latency.",
    ["model"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
LLM_TOKENS = Counter("banditloop_llm_tokens_total", "LLM tokens used.", ["model", "kind"])


def render(state: Collector | None = None) -> tuple[bytes, str]:
    """The exposition text for /metrics, aggregated over workers in multiprocess mode, with
    the scrape-time `state` collector's families appended. It may query the database: call
    it off the event loop."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY as registry
    body = generate_latest(registry)
    if state is not None:
        extra = CollectorRegistry()
        extra.register(state)
        body += generate_latest(extra)
    return body, CONTENT_TYPE_LATEST
