"""Decisions per second through `POST /v1/choose/batch` (1,000 units), unkeyed and keyed.

The service runs under uvicorn (one worker, the same flags and CPU pinning as bench/choose)
on the embedded SQLite default and on PostgreSQL; a client on the other CPU posts batches
one after another and times each answer. Keyed batches use a new send id per request, so
every unit is minted, stored and read back (no keyed-cache hits).

The baseline, measured in the same run and server: the same requests with a query string
(`?via=framework`), which the plain ASGI path hands to the framework's route. Rounds
alternate the two paths; medians are printed with the ratios.

With ``--tree NAME=PATH`` (another checkout with its own .venv, e.g. ``main`` exported),
each checkout gets its own server and database and the plain path of each is posted to in
alternating rounds (the order flips each round), with the ratios printed.

Run: .venv/bin/python bench/batch/run.py [--rounds 5] [--requests 20] [--databases sqlite,postgres]
     [--tree base=/path/to/checkout]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
UNITS = 1_000
PG_ADMIN_URL = os.environ.get(
    "BANDITLOOP_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _choose_bench() -> Any:
    """bench/choose/run.py, for its pinned uvicorn server and experiment set-up."""
    spec = importlib.util.spec_from_file_location("bench_choose", REPO / "bench/choose/run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _database(kind: str, workdir: Path, variant: str) -> tuple[str, str | None]:
    """A fresh database: its URL and, for PostgreSQL, its name to drop."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / f'bench-{variant}.db'}", None
    from sqlalchemy import create_engine, text

    name = f"banditloop_batch_{os.getpid()}_{variant.replace('-', '_')}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", name


def _drop(name: str | None) -> None:
    if name is None:
        return
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _post_batches(
    client: httpx.Client, path: str, experiment: str, keyed: bool, requests: int
) -> float:
    """Median decisions per second over ``requests`` batches."""
    rates = []
    for _ in range(requests):
        send = uuid.uuid4().hex[:12]
        units = [
            {"unit_id": f"u{i}", "send_id": send} if keyed else {"unit_id": f"u{i}"}
            for i in range(UNITS)
        ]
        started = time.perf_counter()
        answer = client.post(path, json={"experiment": experiment, "units": units})
        elapsed = time.perf_counter() - started
        answer.raise_for_status()
        assert len(answer.json()["decisions"]) == UNITS
        rates.append(UNITS / elapsed)
    return statistics.median(rates)


def _run(
    kind: str, rounds: int, requests: int, choose: Any, trees: dict[str, Path], settle: float
) -> dict[tuple[str, str], float]:
    """{(keyed or unkeyed, path or tree name): median decisions/s}. Without other trees:
    the plain path against the framework's route on one server; with them, one server per
    checkout (each its own database), the plain path of each, rounds alternating."""
    from service.core.migrations import upgrade

    workdir = Path(tempfile.mkdtemp(prefix="banditloop-batch-"))
    databases = {name: _database(kind, workdir, name) for name in trees}
    try:
        with contextlib.ExitStack() as stack:
            targets = []
            for name, tree in trees.items():
                url = databases[name][0]
                upgrade(url)
                admin_key = "bl_bench_admin_" + os.urandom(12).hex()
                env = dict(os.environ)
                env.update(BANDITLOOP_DATABASE_URL=url, BANDITLOOP_BOOTSTRAP_ADMIN_KEY=admin_key)
                port, pid = stack.enter_context(
                    choose._server("service.main:app", env, workdir, f"service-{name}", tree=tree)
                )
                token, _answer, _size = choose._set_up_service(port, admin_key)
                client = stack.enter_context(
                    httpx.Client(
                        base_url=f"http://127.0.0.1:{port}",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=60,
                    )
                )
                if len(trees) == 1:
                    targets.append((client, pid, "framework", "/v1/choose/batch?via=framework"))
                    targets.append((client, pid, "plain", "/v1/choose/batch"))
                else:
                    targets.append((client, pid, name, "/v1/choose/batch"))
            if choose._can_pin():
                os.sched_setaffinity(0, {int(choose.LOAD_CPU)})
            for client, _pid, _via, path in targets:
                _post_batches(client, path, choose.EXPERIMENT, False, 3)  # warm
            found: dict[tuple[str, str], list[float]] = {}
            for number in range(rounds):
                order = targets if number % 2 == 0 else targets[::-1]
                for keyed in (False, True):
                    for client, pid, via, path in order:
                        # Every server's decision log drained (flushed every 200 ms): one
                        # server's flush of the last turn would compete for the CPU the
                        # servers share with the turn being timed.
                        time.sleep(settle)
                        # The server's child processes beside the load, as bench/choose does.
                        choose._place_children(pid, "load")
                        rate = _post_batches(client, path, choose.EXPERIMENT, keyed, requests)
                        mode = "keyed" if keyed else "unkeyed"
                        found.setdefault((mode, via), []).append(rate)
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        return {k: statistics.median(v) for k, v in found.items()}
    finally:
        for _url, database in databases.values():
            _drop(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20, help="batches per path and round")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds of pause before each turn, for the servers' decision logs to drain",
    )
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also serve another checkout (with its own .venv), interleaved with this one",
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    choose = _choose_bench()
    trees = {"this": REPO}
    for item in args.tree:
        name, _, path = item.partition("=")
        tree = Path(path).resolve()
        if not name or not (tree / ".venv" / "bin" / "python").exists():
            sys.exit(f"--tree takes NAME=PATH of a checkout with its .venv; got {item!r}")
        trees[name] = tree
    print(f"POST /v1/choose/batch, {UNITS:,} units, K={choose.ARMS}; one uvicorn worker each")
    print(f"medians of {args.rounds} interleaved rounds of {args.requests} batches each")
    aims = {"unkeyed": 150_000, "keyed": 50_000}
    others = [name for name in trees if name != "this"]
    if others:
        columns = "".join(f" {name + '/s':>12}" for name in others)
        ratios = "".join(f" {'this/' + name:>10}" for name in others)
        print(f"{'database':9} {'units':8} {'this/s':>12}{columns}{ratios}  aim")
    else:
        print(f"{'database':9} {'units':8} {'framework/s':>12} {'plain/s':>10} {'ratio':>6}  aim")
    with choose._priority():
        for kind in args.databases.split(","):
            found = _run(kind, args.rounds, args.requests, choose, trees, args.settle)
            for mode in ("unkeyed", "keyed"):
                aim = f">= {aims[mode]:,}/s"
                if others:
                    this = found[(mode, "this")]
                    cells = "".join(f" {found[(mode, name)]:12,.0f}" for name in others)
                    cells += "".join(f" {this / found[(mode, name)]:10.2f}" for name in others)
                    print(f"{kind:9} {mode:8} {this:12,.0f}{cells}  {aim}")
                    continue
                framework, plain = found[(mode, "framework")], found[(mode, "plain")]
                print(
                    f"{kind:9} {mode:8} {framework:12,.0f} {plain:10,.0f} "
                    f"{plain / framework:6.2f}  {aim}"
                )


if __name__ == "__main__":
    main()
