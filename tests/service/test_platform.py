"""Health, readiness, migrations, the OpenAPI document, the CLI, the decision log."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import inspect
from sqlmodel import Session, select

from service.core import migrations
from service.core.cli import main as cli_main
from service.core.db import make_engine
from service.core.runtime import Runtime
from service.models import Decision, metadata
from tests.service.factories import create_random_experiment


def test_health_and_readiness(client: TestClient):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["migration"] == ready.json()["head"]


def test_migrations_run_down_and_up(database_url: str, engine_for):
    migrations.downgrade(database_url, "base")
    try:
        engine = make_engine(database_url)
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        engine.dispose()
    finally:
        migrations.upgrade(database_url)
    engine = make_engine(database_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert set(metadata.tables) <= tables


def test_openapi_documents_every_route(client: TestClient):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in [
        "/v1/choose",
        "/v1/choose/batch",
        "/v1/events",
        "/v1/webhooks/{provider}",
        "/v1/experiments",
        "/v1/experiments/{key}/report",
        "/v1/admin/keys",
        "/v1/admin/replay",
        "/v1/units/{unit_id}",
        "/healthz",
        "/readyz",
    ]:
        assert path in paths, path
    assert "bearer" in str(spec["components"]["securitySchemes"]).lower()
    schemas = spec["components"]["schemas"]
    for name in ("EventIn", "ChooseIn", "BatchIn", "UnitIn"):
        assert name in schemas, name
    refs = {v for v in _walk(spec) if isinstance(v, str) and v.startswith("#/components/")}
    assert {r.rsplit("/", 1)[1] for r in refs} <= set(schemas)
    choose = paths["/v1/choose"]["post"]["responses"]["200"]["content"]["application/json"]
    assert choose["schema"]["$ref"].endswith("/ChooseOut")


def test_keys_cli(settings, monkeypatch, capsys):
    for name, value in {
        "BANDITLOOP_DATABASE_URL": settings.database_url,
        "BANDITLOOP_SIGNING_KEYS": settings.signing_keys,
    }.items():
        monkeypatch.setenv(name, value)
    assert cli_main(["keys", "create", "--name", "esp", "--scopes", "decide,ingest"]) == 0
    created = capsys.readouterr().out
    assert "bl_" in created
    assert cli_main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert "decide,ingest" in listed
    assert "esp" in listed
    key_id = int(created.split()[2])
    assert cli_main(["keys", "revoke", str(key_id)]) == 0
    assert cli_main(["keys", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert cli_main(["keys", "create", "--name", "bad", "--scopes", "root"]) == 2


def test_serve_refuses_workers_on_sqlite(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BANDITLOOP_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    assert cli_main(["serve", "--workers", "2"]) == 2
    assert "SQLite" in capsys.readouterr().err


def test_decision_log_flushes_on_its_interval(settings, engine_for, client, admin, decide):
    exp = create_random_experiment(client, admin)
    background = Runtime(
        settings.model_copy(update={"run_background": True, "decision_flush_ms": 50}),
        engine=engine_for,
    )
    background.start()
    try:
        choice = background.decider.choose(
            exp["key"], [__import__("service.deciding.decider", fromlist=["Unit"]).Unit()]
        )[0]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with Session(engine_for) as session:
                if session.get(Decision, choice.decision_id) is not None:
                    break
            time.sleep(0.02)
        else:
            raise AssertionError("decision never flushed")
    finally:
        background.stop()  # every worker, the loop scheduler too; the shared engine stays


def test_sigterm_flushes_every_pending_decision(tmp_path):
    """A real server process: decisions answered before SIGTERM are all stored after it."""
    db = tmp_path / "serve.db"
    env = {
        "BANDITLOOP_DATABASE_URL": f"sqlite:///{db}",
        "BANDITLOOP_BOOTSTRAP_ADMIN_KEY": "bl_test_bootstrap_admin_key_0123456789",
        "BANDITLOOP_DECISION_FLUSH_MS": "60000",  # nothing flushes on its own during the test
        "PATH": "/usr/bin:/bin",
    }
    port = 18000 + (hash(str(tmp_path)) % 1000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.core.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        headers = {"Authorization": "Bearer bl_test_bootstrap_admin_key_0123456789"}
        # Generous timeouts: on a loaded machine the first requests of a cold process are slow.
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http.get("/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        created = http.post(
            "/v1/experiments",
            json={"key": "sig", "name": "sig", "arms": [{"content": "a"}, {"content": "b"}]},
        )
        assert created.status_code == 201
        # A 2xx means committed and visible: the very next call sees the pause.
        assert http.post("/v1/experiments/sig/pause").status_code == 200
        paused = http.post("/v1/choose", json={"experiment": "sig"})
        assert paused.json()["fallback"] is True
        assert http.post("/v1/experiments/sig/resume").status_code == 200
        answered = http.post(
            "/v1/choose/batch", json={"experiment": "sig", "units": [{} for _ in range(250)]}
        ).json()["decisions"]
        http.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    engine = make_engine(f"sqlite:///{db}")
    with Session(engine) as session:
        stored = {d.id for d in session.exec(select(Decision))}
    engine.dispose()
    assert {d["decision_id"] for d in answered} <= stored
    assert len(stored) == 250


def _walk(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)
    else:
        yield node


def test_migrate_creates_the_sqlite_folder_on_a_fresh_machine(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'fresh' / 'nested' / 'banditloop.db'}"
    monkeypatch.setenv("BANDITLOOP_DATABASE_URL", url)
    assert cli_main(["migrate"]) == 0
    assert (tmp_path / "fresh" / "nested" / "banditloop.db").exists()
    assert "database at" in capsys.readouterr().out
