"""Transient database faults are 503 with Retry-After on every route, never 500.

Real faults only: a write lock held on the SQLite file by another connection, and a
PostgreSQL server that the service reaches through a proxy the test cuts.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from service.core import migrations
from service.core.app import create_app
from service.core.db import make_engine
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.models import DeadLetter
from tests.conftest import PG_ADMIN_URL, SIGNING_KEYS, _admin_sql
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many, metric_total
from tests.service.measuring.adapters import signers
from tests.service.tcp_proxy import TcpProxy

MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
POSTMARK = ("postmark", "s3cret-current-password")
JSON = {"content-type": "application/json"}


@dataclass
class Service:
    client: TestClient
    runtime: Runtime
    admin: dict[str, str]
    decide: dict[str, str]
    ingest: dict[str, str]


def _service(url: str, engine: Any) -> Iterator[Service]:
    settings = Settings(
        database_url=url,
        signing_keys=SIGNING_KEYS,
        run_background=False,
        api_key_cache_seconds=0,  # every request reads its key: the fault shows everywhere
        mailgun_signing_key=MAILGUN_KEY,
        postmark_username=POSTMARK[0],
        postmark_password=POSTMARK[1],
        _env_file=None,  # type: ignore[call-arg]
    )
    runtime = Runtime(settings, engine=engine)
    keys = {
        s: runtime.api_keys.create(name=s, scopes=[s])[1] for s in ("admin", "decide", "ingest")
    }
    headers = {s: {"Authorization": f"Bearer {k}"} for s, k in keys.items()}
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        yield Service(client, runtime, headers["admin"], headers["decide"], headers["ingest"])


@pytest.fixture
def sqlite_service(tmp_path: Path) -> Iterator[tuple[Service, Path]]:
    path = tmp_path / "faults.db"
    url = f"sqlite:///{path}"
    migrations.upgrade(url)
    # A short busy timeout so that the held lock turns into an error within the test.
    yield from ((s, path) for s in _service(url, make_engine(url, busy_timeout_ms=300)))


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["code"] == "unavailable"


def mailgun_click(decision_id: str, key: str) -> bytes:
    now = datetime.now(UTC)
    data = {
        "id": key,
        "timestamp": now.timestamp(),
        "event": "clicked",
        "recipient": "r@example.com",
        "message": {"headers": {"message-id": f"{key}@mg.example.com"}},
        "user-variables": {"bl_decision": decision_id},
    }
    return signers.mailgun_body(data, MAILGUN_KEY, int(now.timestamp()))


def postmark_click(decision_id: str, key: str) -> bytes:
    return signers.dumps(
        {
            "RecordType": "Click",
            "MessageStream": "outbound",
            "MessageID": f"msg-{key}",
            "Recipient": "r@example.com",
            "ReceivedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Metadata": {"bl_decision": decision_id},
            "OriginalLink": "https://shop.example.com/",
        }
    )


def test_sqlite_lock_is_503_with_retry_after_on_api_and_webhooks(
    sqlite_service: tuple[Service, Path],
) -> None:
    s, path = sqlite_service
    exp = create_random_experiment(s.client, s.admin, arms=2)
    ids = [d["decision_id"] for d in decide_many(s.client, s.decide, s.runtime, exp["key"], 3)]
    event = {"event_id": "e0", "decision_id": ids[0], "type": "click"}
    postmark_auth = {**JSON, **signers.basic_auth(*POSTMARK)}

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write transaction
    try:
        assert_unavailable(s.client.post("/v1/events", json=event, headers=s.ingest))
        assert_unavailable(
            s.client.post(
                "/v1/experiments",
                json={"key": "x", "name": "x", "arms": [{"content": "a"}]},
                headers=s.admin,
            )
        )
        # Mailgun stops on 406 and Postmark on 403: a lock must be a 503 that both retry.
        mailgun = s.client.post(
            "/v1/webhooks/mailgun", content=mailgun_click(ids[1], "mg1"), headers=JSON
        )
        assert_unavailable(mailgun)
        postmark = s.client.post(
            "/v1/webhooks/postmark", content=postmark_click(ids[2], "pm1"), headers=postmark_auth
        )
        assert_unavailable(postmark)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    # The retries the 503 asked for succeed and count once.
    assert s.client.post("/v1/events", json=event, headers=s.ingest).json()["accepted"] == 1
    mailgun = s.client.post(
        "/v1/webhooks/mailgun", content=mailgun_click(ids[1], "mg1"), headers=JSON
    )
    assert mailgun.status_code == 200, mailgun.text
    postmark = s.client.post(
        "/v1/webhooks/postmark", content=postmark_click(ids[2], "pm1"), headers=postmark_auth
    )
    assert postmark.status_code == 200, postmark.text
    assert metric_total(s.runtime, "click") == 3


@pytest.fixture
def proxied_postgres() -> Iterator[tuple[str, TcpProxy]]:
    """A fresh PostgreSQL database reached through a proxy the test can cut."""
    name = f"banditloop_faults_{int(time.time() * 1000) % 10**9}"
    _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin_sql(f'CREATE DATABASE "{name}"')
    admin_url = make_url(PG_ADMIN_URL)
    proxy = TcpProxy((admin_url.host or "127.0.0.1", admin_url.port or 5432))
    url = admin_url.set(host="127.0.0.1", port=proxy.port, database=name)
    rendered = url.render_as_string(hide_password=False)
    migrations.upgrade(rendered)
    try:
        yield rendered, proxy
    finally:
        proxy.cut()
        _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_postgres_connection_loss_is_503_then_heals(
    proxied_postgres: tuple[str, TcpProxy],
) -> None:
    url, proxy = proxied_postgres
    engine = make_engine(url)
    for s in _service(url, engine):
        exp = create_random_experiment(s.client, s.admin, arms=2)
        ids = [d["decision_id"] for d in decide_many(s.client, s.decide, s.runtime, exp["key"], 2)]
        proxy.cut()
        try:
            event = {"event_id": "e0", "decision_id": ids[0], "type": "click"}
            assert_unavailable(s.client.post("/v1/events", json=event, headers=s.ingest))
            assert_unavailable(s.client.get(f"/v1/experiments/{exp['key']}", headers=s.admin))
        finally:
            proxy.restore()
        accepted = s.client.post("/v1/events", json=event, headers=s.ingest)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["accepted"] == 1
        assert metric_total(s.runtime, "click") == 1
    engine.dispose()


def test_decision_log_keeps_decisions_through_a_postgres_outage(
    proxied_postgres: tuple[str, TcpProxy],
) -> None:
    url, proxy = proxied_postgres
    engine = make_engine(url)
    for s in _service(url, engine):
        exp = create_random_experiment(s.client, s.admin, arms=2)
        response = s.client.post(
            "/v1/choose/batch",
            json={"experiment": exp["key"], "units": [{"unit_id": f"u{i}"} for i in range(40)]},
            headers=s.decide,
        )
        ids = [d["decision_id"] for d in response.json()["decisions"]]
        proxy.cut()
        try:
            assert s.runtime.decision_log.flush() == 0
            assert s.runtime.decision_log.flush() == 0
            assert s.runtime.decision_log.pending == 40  # kept, none set aside
        finally:
            proxy.restore()
        assert s.runtime.decision_log.flush() == 40
        assert metric_total(s.runtime, "exposure") == 40
        events = [
            {"event_id": f"e{i}", "decision_id": d, "type": "click"} for i, d in enumerate(ids)
        ]
        body = s.client.post("/v1/events", json=events, headers=s.ingest).json()
        assert (body["accepted"], body["orphans"]) == (40, 0)
        with Session(engine) as session:
            assert not list(session.exec(select(DeadLetter)))
    engine.dispose()


def test_decision_log_waits_out_a_sqlite_lock(sqlite_service: tuple[Service, Path]) -> None:
    s, path = sqlite_service
    exp = create_random_experiment(s.client, s.admin, arms=2)
    s.client.post(
        "/v1/choose/batch",
        json={"experiment": exp["key"], "units": [{"unit_id": f"u{i}"} for i in range(25)]},
        headers=s.decide,
    )
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert s.runtime.decision_log.flush() == 0
        assert s.runtime.decision_log.pending == 25
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert s.runtime.decision_log.flush() == 25
    assert metric_total(s.runtime, "exposure") == 25
