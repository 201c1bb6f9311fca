"""A real headless browser for tests: Debian's chromium driven by Playwright, with no network
but the service under test. Registered as a pytest plugin in tests/conftest.py.

    def test_page(live_server: str, offline_page: OfflinePage) -> None:
        offline_page.page.goto(f"{live_server}/docs")
        ...
        assert offline_page.blocked == []

`scripts/ensure-chromium.sh` (run by `make test`) installs the browser; Playwright's own
`playwright install` cannot download one here, so `executable_path` points at the system's.
`live_server` serves the `runtime` fixture's app (so it runs on SQLite and PostgreSQL) with a
real uvicorn on a free loopback port.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

CHROMIUM = os.environ.get("BANDITLOOP_TEST_CHROMIUM", "/usr/bin/chromium")
# No GPU, no sandbox (tests run as root), and none of the browser's own traffic
# (updates, sync, safe browsing): the only requests are the page's.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class OfflinePage:
    """A page whose requests go only to `allowed` origins; the rest are aborted and listed."""

    page: Any
    allowed: tuple[str, ...]
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One browser per test process (xdist worker)."""
    if not os.path.exists(CHROMIUM):
        if _in_ci():
            pytest.fail(f"{CHROMIUM} is missing under CI: run scripts/ensure-chromium.sh")
        pytest.skip(f"{CHROMIUM} is not installed (scripts/ensure-chromium.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def live_server(runtime: Any) -> Iterator[str]:
    """The app on a real uvicorn, on a free loopback port, in a thread."""
    from service.core.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(runtime=runtime), log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def offline_page(chromium: Any, live_server: str) -> Iterator[OfflinePage]:
    """A fresh browser context that may reach `live_server` and nothing else."""
    context = chromium.new_context()
    offline = OfflinePage(page=context.new_page(), allowed=(live_server,))

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith(offline.allowed) or url.startswith(("data:", "blob:")):
            request_route.continue_()
        else:
            offline.blocked.append(url)
            request_route.abort()

    context.route("**/*", route)
    offline.page.on(
        "console", lambda m: offline.console_errors.append(m.text) if m.type == "error" else None
    )
    try:
        yield offline
    finally:
        context.close()
