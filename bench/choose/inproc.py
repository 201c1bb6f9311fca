"""CPU per request of /v1/choose and of the bare endpoint, and of the decision log's flush
per decision, without sockets or background threads: a steadier split than wrk's on a shared
machine (it leaves out uvicorn's and the kernel's share, the same for both endpoints).

Run: .venv/bin/python bench/choose/inproc.py [--requests 3000] [--rounds 5]

The served app (`create_app`, the real runtime on a fresh SQLite file) and bench/choose's
bare app are called as ASGI applications from one event loop, in alternating rounds; after
each /v1/choose round the decision log is flushed and timed apart. Times are this thread's
CPU (`time.thread_time`); medians of the rounds. To compare code, interleave runs from two
checkouts (`cd /work/wt-base && .venv/bin/python /path/to/this/inproc.py`): single runs
move by 10% or more with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# The service measured is the current directory's: run it from another checkout (with that
# checkout's interpreter) to measure that checkout's code with this script.
sys.path[:0] = [str(Path.cwd()), str(HERE)]

import bare_app  # noqa: E402

from service.core.app import create_app  # noqa: E402


def _ingest_bench() -> Any:
    """bench/ingest/run.py, for its fresh database and in-thread server."""
    spec = importlib.util.spec_from_file_location("ingest_bench", HERE.parent / "ingest" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


EXPERIMENT = "bench-inproc"


def _receiver(body: bytes) -> Any:
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)  # the client never disconnects
        return {"type": "http.disconnect"}

    return receive


async def _drive(app: Any, token: str, first: int, n: int) -> set[int]:
    statuses: set[int] = set()
    for i in range(first, first + n):
        body = json.dumps({"experiment": EXPERIMENT, "unit_id": f"u{i}"}).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/choose",
            "raw_path": b"/v1/choose",
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
        receive = _receiver(body)

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.add(message["status"])

        await app(scope, receive, send)
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.requests
    ingest = _ingest_bench()
    url = ingest.create_database("sqlite")
    try:
        with ingest.serve(url) as service:
            arms = [{"content": f"Subject {i}", "control": i == 0} for i in range(5)]
            service.http.post(
                "/v1/experiments",
                json={"key": EXPERIMENT, "name": "inproc", "arms": arms},
                headers=service.admin,
            ).raise_for_status()
            runtime = service.runtime
            runtime.refresher.recompute_all()
            token = service.decide["Authorization"].split()[1]
            answer = service.http.post(
                "/v1/choose",
                json={"experiment": EXPERIMENT, "unit_id": "x"},
                headers=service.decide,
            ).json()
            assert not answer["fallback"], answer
            app = create_app(runtime=runtime)
            app.state.runtime = runtime
            bare = bare_app.create_app(answer)
            loop = asyncio.new_event_loop()
            loop.run_until_complete(_drive(app, token, 10**7, 500))
            runtime.decision_log.flush()
            loop.run_until_complete(_drive(bare, token, 0, 500))
            gc.collect()
            gc.freeze()
            cpu: dict[str, list[float]] = {"bare": [], "choose": [], "flush": []}
            for number in range(args.rounds):
                for name, target in (("bare", bare), ("choose", app)):
                    start = time.thread_time()
                    statuses = loop.run_until_complete(_drive(target, token, number * n, n))
                    cpu[name].append((time.thread_time() - start) / n * 1e6)
                    assert statuses == {200}, statuses
                start = time.thread_time()
                flushed = runtime.decision_log.flush()
                cpu["flush"].append((time.thread_time() - start) / flushed * 1e6)
            loop.close()
    finally:
        ingest.drop_database("sqlite")
    print(f"CPU per request (us), {args.rounds} rounds of {n:,} requests, this thread")
    for name, values in cpu.items():
        label = "flush per decision" if name == "flush" else name
        rounds = " ".join(f"{v:.1f}" for v in values)
        print(f"{label:<20} {rounds}   median {statistics.median(values):.1f}")
    choose = statistics.median(cpu["choose"]) + statistics.median(cpu["flush"])
    print(f"choose + flush / bare: {choose / statistics.median(cpu['bare']):.2f}")


if __name__ == "__main__":
    main()
