"""Mixed load against `banditloop serve --workers N` on PostgreSQL, one and two workers.

Run: .venv/bin/python bench/load/run.py [--seconds 20] [--workers 1,2] [--concurrency 16]
         [--writers default] [--rounds 1]

For each worker count: a fresh database, a real `banditloop serve` on a free loopback port,
an experiment and keys made through the API, then a fixed time of mixed traffic from one
asyncio client: POST /v1/choose (one unit), POST /v1/choose/batch (100 units), POST
/v1/events (clicks on recent decisions, many within the flush interval, so they arrive as
orphans and count when their decision lands) and the signed generic webhook (the same).
Prints throughput, p50/p99/p99.9 per operation and errors; after the run it waits for the
decision log and checks that no event was left an orphan. Exits 1 on any error (a non-2xx,
a transport error, a leftover orphan). Bounded: --seconds per round and --max-requests.

`--writers process,thread` runs each worker count with the decision writer process on and
off (BANDITLOOP_DECISION_WRITER_PROCESS), interleaved over `--rounds`; each run also prints
the events still orphans the moment the load stops (decisions not yet written: the backlog),
the decisions the serving processes wrote themselves because the writer was behind, and the
serving event loop's lag (banditloop_event_loop_lag_seconds, over all workers).

Cores: the generator pins itself to core 0 (os.sched_setaffinity); the server's workers and
PostgreSQL are not pinned and share both cores with it, as they would on a small host.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `bench` as a namespace package
from bench.choose.run import lag_buckets, lag_summary  # noqa: E402

WRITER_SETTING = {"process": "true", "thread": "false"}
PG_ADMIN_URL = os.environ.get(
    "BANDITLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SIGNING_KEYS = "load1:bench-load-signing-secret-0123456789"
WEBHOOK_SECRET = "whsec_bench_load_0123456789"
# The share of each operation in the mix (batch choose is 100 decisions per call).
MIX = {"choose": 0.50, "batch": 0.10, "events": 0.25, "webhook": 0.15}
BATCH_UNITS = 100
FLUSH_SECONDS = 0.2  # BANDITLOOP_DECISION_FLUSH_MS's default
EVENTS_PER_CALL = 20


def pg_admin(statement: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(statement))
    admin.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(workers: int, writer: str = "default") -> Iterator[tuple[str, str, str]]:
    """A fresh database and `banditloop serve --workers N`; yields (base url, admin key, db).
    ``writer``: process or thread forces BANDITLOOP_DECISION_WRITER_PROCESS on or off."""
    name = f"banditloop_load_{os.getpid()}_{workers}"
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_admin(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    admin_key = secrets.token_urlsafe(32)
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="banditloop-load-", suffix=".log", delete=False)
    env = {
        **os.environ,
        "BANDITLOOP_DATABASE_URL": url,
        "BANDITLOOP_SIGNING_KEYS": SIGNING_KEYS,
        "BANDITLOOP_BOOTSTRAP_ADMIN_KEY": admin_key,
        "BANDITLOOP_GENERIC_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="banditloop-load-metrics-"),
    }
    if writer in WRITER_SETTING:
        env["BANDITLOOP_DECISION_WRITER_PROCESS"] = WRITER_SETTING[writer]
    command = [
        str(Path(sys.executable).parent / "banditloop"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"server exited; see {log.name}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server not ready in 120 s; see {log.name}")
            time.sleep(0.2)
        time.sleep(1.0 if workers > 1 else 0)  # let every worker finish its start-up
        yield base, admin_key, url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    events: int = 0
    event_seq: int = 0
    in_flight: list[float] = field(default_factory=list)  # pending decisions, polled

    def error(self, op: str, what: str) -> None:
        self.errors[op] += 1
        if len(self.samples) < 5:
            self.samples.append(f"{op}: {what[:200]}")


def setup(base: str, admin_key: str) -> tuple[str, dict[str, str], dict[str, str]]:
    admin = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=base, timeout=30) as client:
        key = f"load-{secrets.token_hex(4)}"
        body = {
            "key": key,
            "name": "Load test subject lines",
            "arms": [{"content": f"Subject line {i}", "control": i == 0} for i in range(4)],
        }
        client.post("/v1/experiments", json=body, headers=admin).raise_for_status()
        headers = {}
        for scope in ("decide", "ingest"):
            made = client.post(
                "/v1/admin/keys", json={"name": scope, "scopes": [scope]}, headers=admin
            )
            made.raise_for_status()
            headers[scope] = {"Authorization": f"Bearer {made.json()['key']}"}
    return key, headers["decide"], headers["ingest"]


def signed(body: bytes) -> dict[str, str]:
    stamp = int(time.time())
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return {
        "content-type": "application/json",
        "x-banditloop-signature": f"t={stamp},v1={digest.hexdigest()}",
    }


async def one_request(
    client: httpx.AsyncClient,
    op: str,
    tally: Tally,
    rng: random.Random,
    experiment: str,
    decide: dict[str, str],
    ingest: dict[str, str],
) -> None:
    if op in ("events", "webhook") and len(tally.decisions) < EVENTS_PER_CALL:
        op = "choose"
    if op == "choose":
        request = client.build_request(
            "POST",
            "/v1/choose",
            json={"experiment": experiment, "unit_id": f"u{rng.random()}"},
            headers=decide,
        )
    elif op == "batch":
        units = [{"unit_id": f"b{rng.random()}"} for _ in range(BATCH_UNITS)]
        request = client.build_request(
            "POST",
            "/v1/choose/batch",
            json={"experiment": experiment, "units": units},
            headers=decide,
        )
    else:
        recent = tally.decisions[-2000:]
        events = []
        for _ in range(EVENTS_PER_CALL):
            tally.event_seq += 1
            events.append(
                {
                    "event_id": f"{op}-{tally.event_seq}",
                    "decision_id": rng.choice(recent),
                    "type": "click",
                }
            )
        if op == "events":
            request = client.build_request("POST", "/v1/events", json=events, headers=ingest)
        else:
            body = json.dumps(events).encode()
            request = client.build_request(
                "POST", "/v1/webhooks/generic", content=body, headers=signed(body)
            )
    started = time.perf_counter()
    try:
        response = await client.send(request)
    except httpx.HTTPError as exc:
        tally.error(op, f"{type(exc).__name__}: {exc}")
        return
    tally.latencies[op].append(time.perf_counter() - started)
    if response.status_code >= 300:
        tally.error(op, f"{response.status_code} {response.text}")
        return
    data = response.json()
    if op == "choose":
        tally.decisions.append(data["decision_id"])
    elif op == "batch":
        tally.decisions.extend(d["decision_id"] for d in data["decisions"])
    else:
        if data.get("rejected"):
            tally.error(op, f"rejected {data['rejected'][:1]}")
        tally.events += EVENTS_PER_CALL


async def drive(
    base: str,
    experiment: str,
    decide: dict[str, str],
    ingest: dict[str, str],
    seconds: float,
    concurrency: int,
    max_requests: int,
    seed: int,
) -> tuple[Tally, float, int]:
    tally = Tally()
    ops, weights = zip(*MIX.items(), strict=True)
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(index: int, client: httpx.AsyncClient, stop_at: float) -> None:
        nonlocal sent
        rng = random.Random(seed * 1000 + index)
        while time.perf_counter() < stop_at and sent < max_requests:
            sent += 1
            op = rng.choices(ops, weights)[0]
            await one_request(client, op, tally, rng, experiment, decide, ingest)

    async def watch(stop_at: float) -> None:
        """The decisions in flight (not yet confirmed written), read from /metrics."""
        async with httpx.AsyncClient(base_url=base, timeout=30) as metrics_client:
            while time.perf_counter() < stop_at:
                answer = await metrics_client.get("/metrics")
                tally.in_flight.append(metric_sum(answer.text, "banditloop_decision_log_pending"))
                await asyncio.sleep(0.25)

    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(
            watch(stop_at), *(worker(i, client, stop_at) for i in range(concurrency))
        )
        elapsed = time.perf_counter() - started
    return tally, elapsed, sent


def leftover_orphans(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM outcome_event WHERE outcome = 'orphan'")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def metric_sum(exposition: str, name: str) -> float:
    """The sum of a metric's samples (over labels and workers) in /metrics text."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.split()[-1])
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Run:
    """One round's figures beside the tally: the backlog and the pauses."""

    writer: str
    elapsed: float
    orphans_at_stop: int
    orphans: int
    in_process: int
    lag: dict[str, float]
    orphans_later: int = 0  # left when they reached 0, or after 10 s
    waited: float = 1.5
    backpressure_s: float = 0.0  # time requests waited for the hand-over


def report(workers: int, tally: Tally, run: Run) -> list[str]:
    lines = []
    elapsed, orphans = run.elapsed, run.orphans
    everything = [v for values in tally.latencies.values() for v in values]
    total = len(everything) + sum(tally.errors.values())
    decisions = len(tally.decisions)
    lines.append(
        f"workers={workers}  writer={run.writer}  requests={total:,}  "
        f"req/s={total / elapsed:,.0f}  decisions/s={decisions / elapsed:,.0f}  "
        f"events/s={tally.events / elapsed:,.0f}  errors={sum(tally.errors.values())}  "
        f"orphans_left={orphans}"
    )
    lines.append(
        f"  backlog: orphans when the load stopped {run.orphans_at_stop:,}, after 1.5 s "
        f"{orphans:,}"
        + (f", after {run.waited:g} s {run.orphans_later:,}" if orphans else "")
        + f"; decisions written in the serving process (writer behind or gone) "
        f"{run.in_process:,}, requests waited {run.backpressure_s:.2f} s"
    )
    if tally.in_flight:
        interval = decisions / elapsed * FLUSH_SECONDS  # decisions of one flush interval
        most = max(tally.in_flight)
        lines.append(
            f"  decisions in flight (banditloop_decision_log_pending, polled every 0.25 s): "
            f"max {most:,.0f} = {most / interval:.1f} flush intervals at the run's rate, "
            f"median {statistics.median(tally.in_flight):,.0f}"
        )
    lines.append(
        f"  event-loop lag (all workers, bucket bounds): p99 {run.lag['lag_p99_ms']:g} ms, "
        f"p99.9 {run.lag['lag_p999_ms']:g} ms, max {run.lag['lag_max_ms']:g} ms, "
        f"{run.lag['lag_over_20ms']:,.0f} of {run.lag['lag_wakeups']:,.0f} wake-ups over 20 ms"
    )
    header = ("operation", "count", "p50 ms", "p99 ms", "p99.9 ms", "errors")
    lines.append("  {:<10} {:>8} {:>8} {:>8} {:>9} {:>7}".format(*header))
    for op in [*MIX, "all"]:
        values = everything if op == "all" else tally.latencies.get(op, [])
        errors = sum(tally.errors.values()) if op == "all" else tally.errors.get(op, 0)
        lines.append(
            f"  {op:<10} {len(values):>8,} {percentile(values, 0.5) * 1000:>8.1f} "
            f"{percentile(values, 0.99) * 1000:>8.1f} {percentile(values, 0.999) * 1000:>9.1f} "
            f"{errors:>7}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="load time per worker count")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--max-requests", type=int, default=200_000, help="per round")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-pin", action="store_true", help="do not pin the generator to core 0")
    parser.add_argument(
        "--writers",
        default="default",
        help="decision writer per run, comma-separated: default, process, thread",
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds")
    args = parser.parse_args()
    writers = [w.strip() for w in args.writers.split(",") if w.strip()]
    if not writers or any(w not in ("default", *WRITER_SETTING) for w in writers):
        parser.error(f"--writers takes default, process, thread; got {args.writers!r}")
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"host: {os.cpu_count()} cores, load average {load} before the run", flush=True)
    failed = False
    results: dict[tuple[int, str], list[tuple[Tally, Run]]] = defaultdict(list)
    for _ in range(args.rounds):
        for workers in [int(w) for w in args.workers.split(",")]:
            for writer in writers:
                tally, run = one_run(args, workers, writer)
                results[(workers, writer)].append((tally, run))
                for line in report(workers, tally, run):
                    print(line, flush=True)
                for sample in tally.samples:
                    print(f"  error sample: {sample}")
                failed = failed or bool(tally.errors) or run.orphans > 0
    if args.rounds > 1:
        print(f"medians of {args.rounds} interleaved rounds", flush=True)
        for (workers, writer), runs in results.items():
            print(summary_line(workers, writer, runs), flush=True)
    return 1 if failed else 0


def one_run(args: argparse.Namespace, workers: int, writer: str) -> tuple[Tally, Run]:
    with server(workers, writer) as (base, admin_key, url):
        experiment, decide, ingest = setup(base, admin_key)
        lag_before = lag_buckets(base)
        tally, elapsed, _ = asyncio.run(
            drive(
                base,
                experiment,
                decide,
                ingest,
                args.seconds,
                args.concurrency,
                args.max_requests,
                args.seed,
            )
        )
        at_stop = leftover_orphans(url)
        lag = lag_summary(lag_before, lag_buckets(base))
        time.sleep(1.5)  # a few flush intervals: every decision written, orphans counted
        orphans = leftover_orphans(url)
        exposition = httpx.get(f"{base}/metrics", timeout=30).text
        in_process = int(metric_sum(exposition, "banditloop_decision_writer_in_process_total"))
        waited_s = metric_sum(exposition, "banditloop_decision_writer_wait_seconds_total")
        later = orphans
        waited = 1.5
        while later and waited < 10:  # a backlog drains; an orphan that lost a race stays
            time.sleep(0.5)
            waited += 0.5
            later = leftover_orphans(url)
    return tally, Run(writer, elapsed, at_stop, orphans, in_process, lag, later, waited, waited_s)


def summary_line(workers: int, writer: str, runs: list[tuple[Tally, Run]]) -> str:
    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    rate = median([len(t.decisions) / r.elapsed for t, r in runs])
    requests = median(
        [
            (sum(map(len, t.latencies.values())) + sum(t.errors.values())) / r.elapsed
            for t, r in runs
        ]
    )
    choose = [1000 * percentile(t.latencies.get("choose", []), 0.99) for t, _ in runs]
    return (
        f"workers={workers}  writer={writer}  req/s={requests:,.0f}  decisions/s={rate:,.0f}  "
        f"choose p99 {median(choose):.1f} ms  "
        f"orphans at stop {median([r.orphans_at_stop for _, r in runs]):,.0f}  "
        f"left {max(r.orphans for _, r in runs)}  "
        f"in-process {median([r.in_process for _, r in runs]):,.0f}  "
        f"in flight max {median([max(t.in_flight, default=0) for t, _ in runs]):,.0f}  "
        f"lag max {median([r.lag['lag_max_ms'] for _, r in runs]):g} ms"
    )


if __name__ == "__main__":
    raise SystemExit(main())
