"""Run the scripted copywriter on 127.0.0.1 (a free port, a background thread).

with running_copywriter() as (base_url, control):
    client = openai.OpenAI(base_url=base_url, api_key="test", timeout=2, max_retries=1)
    control.script("rate_limit")          # next request gets a 429, then clean replies
    control.set_mode("reject_json_schema")  # standing behaviour
    control.last_request                   # the last chat request body (JSON)
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from tests.fakes.copywriter_server import CopywriterControl, build_app


@contextmanager
def running_copywriter(
    control: CopywriterControl | None = None,
) -> Iterator[tuple[str, CopywriterControl]]:
    control = control or CopywriterControl()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        build_app(control),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="copywriter", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the copywriter server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1", control
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
