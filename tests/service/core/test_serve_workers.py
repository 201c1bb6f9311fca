"""`banditloop serve --workers 4` on a fresh PostgreSQL database starts every time.

Every start-up write (migrations, the bootstrap admin key, the policy reload) races across
the workers; a start that loses such a race kills a worker and gunicorn with it, after
/healthz may already have answered. So each start waits for all four workers to finish
their start-up, then checks that the server is still there, ready and answering a keyed call.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from service.core import migrations
from tests.conftest import BACKENDS, PG_ADMIN_URL, SIGNING_KEYS, _admin_sql

STARTS = int(os.environ.get("BANDITLOOP_TEST_SERVE_STARTS", "20"))
WORKERS = 4
BOOT_TIMEOUT = 60.0
ADMIN_KEY = "bootstrap-admin-key-for-the-serve-test-0123456789"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif("postgres" not in BACKENDS, reason="PostgreSQL not selected"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _banditloop() -> str:
    return str(Path(sys.executable).parent / "banditloop")


def _start_once(index: int, tmp_path: Path) -> None:
    name = f"banditloop_serve_{os.getpid()}_{index}"
    _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin_sql(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    port = _free_port()
    log_path = tmp_path / f"serve-{index}.log"
    env = {
        **os.environ,
        "BANDITLOOP_DATABASE_URL": url,
        "BANDITLOOP_SIGNING_KEYS": SIGNING_KEYS,
        "BANDITLOOP_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{index}"),
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                _banditloop(),
                "serve",
                "--workers",
                str(WORKERS),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while log_path.read_text(errors="replace").count("Application startup complete") < WORKERS:
            assert process.poll() is None, f"start {index} died:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"start {index} timed out:\n{log_path.read_text()}"
            time.sleep(0.1)
        time.sleep(0.3)  # a worker that failed after its peers would have taken gunicorn down
        assert process.poll() is None, f"start {index} died:\n{log_path.read_text()[-3000:]}"
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            scraped = client.get("/metrics")  # multiprocess mode with the app preloaded
            assert scraped.status_code == 200
            assert "banditloop_decisions_flushed_total" in scraped.text
            for _ in range(WORKERS):  # likely to reach more than one worker
                keyed = client.get(
                    "/v1/admin/keys", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
                )
                assert keyed.status_code == 200, keyed.text
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_serve_four_workers_on_a_fresh_database_starts_every_time(tmp_path: Path) -> None:
    for index in range(STARTS):
        _start_once(index, tmp_path)


def test_concurrent_migrations_on_a_fresh_database_all_succeed() -> None:
    """Replicas started together each run `alembic upgrade head`; none may fail."""
    name = f"banditloop_migrate_{os.getpid()}"
    _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin_sql(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            migrations.upgrade(url)
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=upgrade) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        engine = create_engine(url)
        assert migrations.current_revision(engine) == migrations.head_revision(url)
        engine.dispose()
    finally:
        _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
