"""Mixed load against `banditloop serve --workers N` on PostgreSQL, one and two workers.

Run: .venv/bin/python bench/load/run.py [--seconds 20] [--workers 1,2] [--concurrency 16]

For each worker count: a fresh database, a real `banditloop serve` on a free loopback port,
an experiment and keys made through the API, then a fixed time of mixed traffic from one
asyncio client: POST /v1/choose (one unit), POST /v1/choose/batch (100 units), POST
/v1/events (clicks on recent decisions, many within the flush interval, so they arrive as
orphans and count when their decision lands) and the signed generic webhook (the same).
Prints throughput, p50/p99/p99.9 per operation and errors; after the run it waits for the
decision log and checks that no event was left an orphan. Exits 1 on any error (a non-2xx,
a transport error, a leftover orphan). Bounded: --seconds per round and --max-requests.

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
PG_ADMIN_URL = os.environ.get(
    "BANDITLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SIGNING_KEYS = "load1:bench-load-signing-secret-0123456789"
WEBHOOK_SECRET = "whsec_bench_load_0123456789"
# The share of each operation in the mix (batch choose is 100 decisions per call).
MIX = {"choose": 0.50, "batch": 0.10, "events": 0.25, "webhook": 0.15}
BATCH_UNITS = 100
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
def server(workers: int) -> Iterator[tuple[str, str, str]]:
    """A fresh database and `banditloop serve --workers N`; yields (base url, admin key, db)."""
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

    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(worker(i, client, stop_at) for i in range(concurrency)))
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(workers: int, tally: Tally, elapsed: float, orphans: int) -> list[str]:
    lines = []
    everything = [v for values in tally.latencies.values() for v in values]
    total = len(everything) + sum(tally.errors.values())
    decisions = len(tally.decisions)
    lines.append(
        f"workers={workers}  requests={total:,}  req/s={total / elapsed:,.0f}  "
        f"decisions/s={decisions / elapsed:,.0f}  events/s={tally.events / elapsed:,.0f}  "
        f"errors={sum(tally.errors.values())}  orphans_left={orphans}"
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
    args = parser.parse_args()
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"host: {os.cpu_count()} cores, load average {load} before the run", flush=True)
    failed = False
    for workers in [int(w) for w in args.workers.split(",")]:
        with server(workers) as (base, admin_key, url):
            experiment, decide, ingest = setup(base, admin_key)
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
            time.sleep(1.5)  # a few flush intervals: every decision written, orphans counted
            orphans = leftover_orphans(url)
        for line in report(workers, tally, elapsed, orphans):
            print(line, flush=True)
        for sample in tally.samples:
            print(f"  error sample: {sample}")
        failed = failed or bool(tally.errors) or orphans > 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
