"""CPU per 1,000-unit batch of POST /v1/choose/batch, unkeyed and keyed, in-process: the
served app called as an ASGI application from one event loop, without sockets, uvicorn or
the client, so what is left is the service's own work (parse, decide, mint, store, answer).

Run: .venv/bin/python bench/batch/inproc.py [--batches 20] [--rounds 5]
     [--databases sqlite,postgres] [--profile keyed|unkeyed]

Times are this process's CPU (`time.process_time`: a keyed batch's store runs in a worker
thread) per batch, then the decision log's flush of the round's unkeyed decisions timed
apart (the log's thread does that in the served app). Medians of the rounds. To compare
code, run this script from another checkout's directory (the service measured is the
current directory's), interleaving runs. ``--profile`` prints cProfile's top functions for
one more round of that kind.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib.util
import json
import pstats
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# The service measured is the current directory's (see the docstring).
sys.path[:0] = [str(Path.cwd())]

from service.core.app import create_app  # noqa: E402

UNITS = 1_000
EXPERIMENT = "bench-batch-inproc"


def _ingest_bench() -> Any:
    """bench/ingest/run.py, for its fresh database and in-thread server."""
    spec = importlib.util.spec_from_file_location("ingest_bench", HERE.parent / "ingest" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _body(keyed: bool) -> bytes:
    send = uuid.uuid4().hex[:12]
    units = [
        {"unit_id": f"u{i}", "send_id": send} if keyed else {"unit_id": f"u{i}"}
        for i in range(UNITS)
    ]
    return json.dumps({"experiment": EXPERIMENT, "units": units}).encode()


async def _post(app: Any, token: str, body: bytes) -> tuple[int, int]:
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status: list[int] = []
    size: list[int] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            size.append(len(message.get("body", b"")))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/choose/batch",
        "raw_path": b"/v1/choose/batch",
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5555),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    await app(scope, receive, send)
    return status[0], sum(size)


def _round(loop: Any, app: Any, token: str, keyed: bool, batches: int) -> float:
    """CPU ms per batch over ``batches`` batches of one kind."""
    bodies = [_body(keyed) for _ in range(batches)]
    start = time.process_time()
    for body in bodies:
        status, _ = loop.run_until_complete(_post(app, token, body))
        assert status == 200, status
    return (time.process_time() - start) / batches * 1e3


def _profiled(runtime: Any, work: Any) -> pstats.Stats:
    """cProfile over ``work`` in this thread and over the decider in whichever thread runs
    it (a keyed batch's decisions run in the worker pool), then the log's flush."""
    main = cProfile.Profile()
    inner = cProfile.Profile()
    decider = runtime.decider
    choose = decider.choose

    def profiled_choose(*a: Any, **k: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            return choose(*a, **k)
        inner.enable()
        try:
            return choose(*a, **k)
        finally:
            inner.disable()

    decider.choose = profiled_choose
    main.enable()
    work()
    runtime.decision_log.flush()
    main.disable()
    decider.choose = choose
    stats = pstats.Stats(main)
    if inner.getstats():  # unkeyed batches decide on the event loop's thread
        stats.add(inner)
    return stats


def _measure(kind: str, args: argparse.Namespace, ingest: Any) -> dict[str, list[float]]:
    url = ingest.create_database(kind)
    try:
        with ingest.serve(url) as service:
            arms = [{"content": f"Subject {i}", "control": i == 0} for i in range(5)]
            service.http.post(
                "/v1/experiments",
                json={"key": EXPERIMENT, "name": "batch inproc", "arms": arms},
                headers=service.admin,
            ).raise_for_status()
            runtime = service.runtime
            runtime.refresher.recompute_all()
            token = service.decide["Authorization"].split()[1]
            app = create_app(runtime=runtime)
            app.state.runtime = runtime
            loop = asyncio.new_event_loop()
            for keyed in (False, True):
                _round(loop, app, token, keyed, 3)
            runtime.decision_log.flush()
            gc.collect()
            gc.freeze()
            cpu: dict[str, list[float]] = {"unkeyed": [], "flush": [], "keyed": []}
            for _ in range(args.rounds):
                cpu["unkeyed"].append(_round(loop, app, token, False, args.batches))
                start = time.process_time()
                runtime.decision_log.flush()
                cpu["flush"].append((time.process_time() - start) / args.batches * 1e3)
                cpu["keyed"].append(_round(loop, app, token, True, args.batches))
            if args.profile:
                stats = _profiled(
                    runtime, lambda: _round(loop, app, token, args.profile == "keyed", args.batches)
                )
                stats.sort_stats("tottime").print_stats(25)
                stats.sort_stats("cumulative").print_stats(40)
            loop.close()
    finally:
        ingest.drop_database(kind)
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="batches per kind and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--profile", choices=("keyed", "unkeyed"))
    args = parser.parse_args()
    ingest = _ingest_bench()
    print(f"CPU ms per batch of {UNITS:,} (process), {args.rounds} rounds of {args.batches}")
    for kind in args.databases.split(","):
        cpu = _measure(kind, args, ingest)
        for name, values in cpu.items():
            rounds = " ".join(f"{v:.1f}" for v in values)
            median = statistics.median(values)
            rate = f"{UNITS / median * 1e3:9,.0f}/s" if name != "flush" else ""
            print(f"{kind:9} {name:8} {rounds}   median {median:6.1f} ms {rate}")


if __name__ == "__main__":
    main()
