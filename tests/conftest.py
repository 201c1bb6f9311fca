"""Shared fixtures: every service test runs on SQLite and on the real PostgreSQL server.

The schema comes only from `alembic upgrade head`. Each pytest-xdist worker gets its own
PostgreSQL database; tables are emptied after each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from service.core import migrations
from service.core.app import create_app
from service.core.clock import SYSTEM_CLOCK, Clock
from service.core.db import make_engine
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.models import metadata

PG_ADMIN_URL = os.environ.get(
    "BANDITLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = [
    b for b in os.environ.get("BANDITLOOP_TEST_DATABASES", "sqlite,postgres").split(",") if b
]
SIGNING_KEYS = "t1:test-signing-secret-0123456789"

# The headless-browser fixtures (chromium, live_server, offline_page).
pytest_plugins = ["tests.browser"]


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _admin_sql(statement: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(statement))
    admin.dispose()


def _postgres_database() -> str:
    # One database per test process: xdist workers and parallel runs never share one.
    name = f"banditloop_test_{_worker()}_{os.getpid()}"
    _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin_sql(f'CREATE DATABASE "{name}"')
    return name


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'banditloop.db'}"
        migrations.upgrade(url)
        yield url
        return
    name = _postgres_database()
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    migrations.upgrade(url)
    yield url
    _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine_for(database_url: str) -> Iterator[Any]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def empty_tables(engine: Any) -> None:
    names = [t.name for t in reversed(metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
        else:
            for name in names:
                conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        signing_keys=SIGNING_KEYS,
        run_background=False,
        api_key_cache_seconds=0,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def clock() -> Clock:
    """The runtime's clock; a module that moves time overrides this with a ManualClock."""
    return SYSTEM_CLOCK


@pytest.fixture
def runtime(settings: Settings, engine_for: Any, clock: Clock) -> Iterator[Runtime]:
    rt = Runtime(settings, engine=engine_for, clock=clock)
    yield rt
    empty_tables(engine_for)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(runtime=runtime)  # the engine passed in stays open on shutdown
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def admin_key(runtime: Runtime) -> str:
    _row, raw = runtime.api_keys.create(name="test admin", scopes=["admin"])
    return raw


@pytest.fixture
def admin(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}


@pytest.fixture
def decide(runtime: Runtime) -> dict[str, str]:
    _row, raw = runtime.api_keys.create(name="sender", scopes=["decide"])
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def ingest(runtime: Runtime) -> dict[str, str]:
    _row, raw = runtime.api_keys.create(name="backend", scopes=["ingest"])
    return {"Authorization": f"Bearer {raw}"}
