"""Events per second through POST /v1/events (batches of 1,000) against a plain INSERT floor.

Run: .venv/bin/python bench/ingest/run.py [--repeats 15] [--databases sqlite,postgres]

The service runs in-process under a real uvicorn on 127.0.0.1 and is called over HTTP with
httpx. The floor is an executemany INSERT of the very rows the service stored for the same
batch, into the same table of the same database, with their own keys, one transaction per
batch. The contenders are interleaved (their order rotates each repeat) and medians are
reported, so drift and table growth hit them alike.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine, create_engine, insert, text
from sqlmodel import Session

from service.core import migrations
from service.core.app import create_app
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.deciding import repository as decisions_repo
from service.measuring.api_events import parse_events_body
from service.measuring.service import ingest_payload
from service.models import Decision, OutcomeEvent

BATCH = 1_000
PG_ADMIN_URL = os.environ.get(
    "BANDITLOOP_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PG_DATABASE = "banditloop_bench"
SQLITE_DIR = Path("/tmp/banditloop_bench")
SIGNING_KEYS = "b1:bench-signing-secret-0123456789abcdef"


# --- databases ------------------------------------------------------------------------


def create_database(kind: str) -> str:
    """A fresh database at Alembic head; returns its URL."""
    if kind == "sqlite":
        shutil.rmtree(SQLITE_DIR, ignore_errors=True)
        SQLITE_DIR.mkdir(parents=True)
        url = f"sqlite:///{SQLITE_DIR / 'bench.db'}"
    else:
        _pg_admin(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        _pg_admin(f'CREATE DATABASE "{PG_DATABASE}"')
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_DATABASE}"
    migrations.upgrade(url)
    return url


def drop_database(kind: str) -> None:
    if kind == "sqlite":
        shutil.rmtree(SQLITE_DIR, ignore_errors=True)
    else:
        _pg_admin(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')


def _pg_admin(statement: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(statement))
    admin.dispose()


# --- the service under test -----------------------------------------------------------


@dataclass
class Service:
    runtime: Runtime
    http: httpx.Client
    admin: dict[str, str]
    decide: dict[str, str]
    ingest: dict[str, str]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(database_url: str, **settings: Any) -> Iterator[Service]:
    """The real app under uvicorn in a thread, and an httpx client for it."""
    runtime = Runtime(
        Settings(
            database_url=database_url,
            signing_keys=SIGNING_KEYS,
            # No refresher or decision-log threads: the bench flushes decisions itself, and
            # the timings measure ingestion alone.
            run_background=False,
            _env_file=None,  # type: ignore[call-arg]
            **settings,
        )
    )
    keys = {
        scope: {"Authorization": f"Bearer {runtime.api_keys.create(name=scope, scopes=[scope])[1]}"}
        for scope in ("admin", "decide", "ingest")
    }
    port = _free_port()
    config = uvicorn.Config(
        create_app(runtime=runtime, freeze_heap=True),  # as service.main serves it
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            yield Service(runtime, http, keys["admin"], keys["decide"], keys["ingest"])
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def create_experiment(service: Service) -> str:
    key = f"bench-{uuid.uuid4().hex[:8]}"
    body = {
        "key": key,
        "name": "Bench subject lines",
        "arms": [{"content": f"Subject {i}", "control": i == 0} for i in range(4)],
    }
    response = service.http.post("/v1/experiments", json=body, headers=service.admin)
    response.raise_for_status()
    return key


def make_decisions(service: Service, experiment: str, n: int) -> list[Decision]:
    """n stored decisions, made through /v1/choose/batch and flushed."""
    ids: list[str] = []
    while len(ids) < n:
        units = [{"unit_id": f"u-{uuid.uuid4().hex}"} for _ in range(min(10_000, n - len(ids)))]
        response = service.http.post(
            "/v1/choose/batch",
            json={"experiment": experiment, "units": units},
            headers=service.decide,
        )
        response.raise_for_status()
        ids.extend(d["decision_id"] for d in response.json()["decisions"])
    service.runtime.decision_log.flush()
    with Session(service.runtime.engine) as session:
        found = decisions_repo.get_many(session, ids=ids)
    return [found[i] for i in ids]


# --- what is measured -----------------------------------------------------------------


def api_events(decisions: list[Decision], prefix: str) -> list[dict[str, Any]]:
    """One click per decision: every event is new and a first event (the full path)."""
    return [
        {"event_id": f"{prefix}-{i}", "decision_id": d.id, "type": "click"}
        for i, d in enumerate(decisions)
    ]


def outcome_rows(decisions: list[Decision], prefix: str, provider: str) -> list[dict[str, Any]]:
    """The outcome_event rows the pipeline stores for these events, keyed apart."""
    now = datetime.now(UTC)
    return [
        {
            "provider": provider,
            "event_key": f"{prefix}-{i}",
            "decision_id": d.id,
            "experiment_id": d.experiment_id,
            "arm_id": d.arm_id,
            "epoch": d.epoch,
            "segment": d.segment,
            "type": "click",
            "provider_type": "click",
            "name": None,
            "value": None,
            "machine": False,
            "occurred_at": now,
            "received_at": now,
            "raw_payload_id": None,
            "outcome": "accepted",
        }
        for i, d in enumerate(decisions)
    ]


def plain_insert(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(OutcomeEvent.__table__), rows)  # type: ignore[arg-type]


def post_batch(service: Service, path: str, body: bytes, headers: dict[str, str]) -> None:
    response = service.http.post(
        path, content=body, headers={**headers, "content-type": "application/json"}
    )
    response.raise_for_status()
    accepted = response.json()["accepted"]
    if accepted != BATCH:
        raise RuntimeError(f"{path} accepted {accepted} of {BATCH}: {response.text[:300]}")


def direct_ingest(service: Service, body: bytes) -> None:
    """The same work as POST /v1/events, minus HTTP: parse, then ingest_payload."""
    events, poison = parse_events_body(body, received_at=datetime.now(UTC), max_events=BATCH)
    result = ingest_payload(
        service.runtime,
        source="api",
        headers={"content-type": "application/json"},
        body=body,
        events=events,
        poison=poison,
    )
    if result.accepted != BATCH:
        raise RuntimeError(f"ingest_payload accepted {result.accepted} of {BATCH}")


def interleaved(
    rounds: list[dict[str, Callable[[], object]]],
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run each round's contenders, rotating their order; seconds per contender, by the
    wall clock and in this process's CPU time (every thread: the HTTP server's too)."""
    timings: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for number, contenders in enumerate(rounds):
        names = list(contenders)
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            start, start_cpu = time.perf_counter(), time.process_time()
            contenders[name]()
            timings.setdefault(name, []).append(time.perf_counter() - start)
            cpu.setdefault(name, []).append(time.process_time() - start_cpu)
    return timings, cpu


def bench_database(kind: str, repeats: int) -> dict[str, float]:
    """Median events/s for each contender on one database (warm-up round excluded)."""
    url = create_database(kind)
    try:
        with serve(url) as service:
            experiment = create_experiment(service)
            rounds: list[dict[str, Callable[[], object]]] = []
            total = repeats + 1
            http_decisions = make_decisions(service, experiment, total * BATCH)
            direct_decisions = make_decisions(service, experiment, total * BATCH)
            for r in range(total):
                mine = http_decisions[r * BATCH : (r + 1) * BATCH]
                http_body = json.dumps(api_events(mine, f"h{r}")).encode()
                direct_body = json.dumps(
                    api_events(direct_decisions[r * BATCH : (r + 1) * BATCH], f"d{r}")
                ).encode()
                floor = outcome_rows(mine, f"h{r}", "floor")
                rounds.append(
                    {
                        "http": lambda b=http_body: post_batch(
                            service, "/v1/events", b, service.ingest
                        ),
                        "in-process": lambda b=direct_body: direct_ingest(service, b),
                        "floor": lambda rows=floor: plain_insert(service.runtime.engine, rows),
                    }
                )
            # The bench's own inputs (decisions, bodies, floor rows: some 150,000 objects) are
            # not the served process's heap: freeze them out of the collector's view, as the
            # app freezes its start-up heap, so a full collection does not walk them.
            gc.collect()
            gc.freeze()
            try:
                timings, cpu = interleaved(rounds)
            finally:
                gc.unfreeze()
        rates = {name: BATCH / statistics.median(values[1:]) for name, values in timings.items()}
        cpu_ms = {f"{name} cpu": 1000 * statistics.median(v[1:]) for name, v in cpu.items()}
        return {**rates, **cpu_ms}
    finally:
        drop_database(kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15, help="timed batches per contender")
    parser.add_argument("--databases", default="sqlite,postgres")
    arguments = parser.parse_args()

    print(
        f"batches of {BATCH:,} click events, one new decision each; "
        f"median of {arguments.repeats} interleaved repeats"
    )
    print(
        f"{'database':<10} {'HTTP events/s':>14} {'in-process/s':>13} {'floor rows/s':>13}"
        f" {'HTTP/floor':>11} {'in-proc/floor':>14}"
    )
    cpu_lines = []
    for kind in arguments.databases.split(","):
        rates = bench_database(kind, arguments.repeats)
        http, direct, floor = rates["http"], rates["in-process"], rates["floor"]
        print(
            f"{kind:<10} {http:>14,.0f} {direct:>13,.0f} {floor:>13,.0f}"
            f" {http / floor:>11.2f} {direct / floor:>14.2f}"
        )
        http_cpu, direct_cpu, floor_cpu = (
            rates[f"{name} cpu"] for name in ("http", "in-process", "floor")
        )
        cpu_lines.append(
            f"{kind:<10} {http_cpu:>14.1f} {direct_cpu:>13.1f} {floor_cpu:>13.1f}"
            f" {floor_cpu / http_cpu:>11.2f} {floor_cpu / direct_cpu:>14.2f}"
        )
    # CPU time moves less than the wall clock when other jobs share the machine; it leaves
    # out PostgreSQL's own work (another process), so there it is the client's share only.
    print("\nthis process's CPU per batch (ms; PostgreSQL's server work not included)")
    print(
        f"{'database':<10} {'HTTP':>14} {'in-process':>13} {'floor':>13}"
        f" {'floor/HTTP':>11} {'floor/in-proc':>14}"
    )
    for line in cpu_lines:
        print(line)


if __name__ == "__main__":
    main()
