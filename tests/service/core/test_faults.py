"""The transient-fault classifier, on errors raised by the real databases.

Transient (retry later, 503 / keep the decisions): a lost or refused connection, a
serialization failure, a lock timeout, SQLite's "database is locked". Not transient (a
row's or our own fault): text PostgreSQL cannot store, a constraint, a missing table.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, OperationalError

from service.core.db import make_engine
from service.core.faults import describe, is_row_fault, is_transient
from tests.conftest import BACKENDS, PG_ADMIN_URL

needs_postgres = pytest.mark.skipif("postgres" not in BACKENDS, reason="PostgreSQL not selected")


def raised(engine: Engine, *statements: str) -> BaseException:
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    except Exception as exc:
        return exc
    raise AssertionError("no error")


TABLE = f"faults_{os.getpid()}"


@pytest.fixture
def pg() -> Iterator[Engine]:
    engine = create_engine(PG_ADMIN_URL)
    table = TABLE
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(text(f"CREATE TABLE {table} (id int primary key, note text)"))
    yield engine
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


@needs_postgres
def test_postgres_row_errors_are_not_transient(pg: Engine) -> None:
    table = TABLE
    nul = raised(pg, f"INSERT INTO {table} VALUES (1, 'go' || chr(0) || 'ld')")
    duplicate = raised(
        pg, f"INSERT INTO {table} VALUES (2, 'a')", f"INSERT INTO {table} VALUES (2, 'b')"
    )
    assert not is_transient(nul)
    assert not is_transient(duplicate)
    assert is_row_fault(nul)
    with pytest.raises(DataError) as bound_nul:  # the decision log's case: a bound value
        with pg.begin() as conn:
            conn.execute(text(f"INSERT INTO {table} VALUES (3, :note)"), {"note": "go\x00ld"})
    assert is_row_fault(bound_nul.value)
    assert not is_transient(bound_nul.value)
    assert is_row_fault(duplicate)
    assert not is_row_fault(raised(pg, "SELECT * FROM nowhere"))
    assert describe(duplicate).startswith("UniqueViolation: duplicate key")


@needs_postgres
def test_postgres_lock_timeout_serialization_and_refused_connection_are_transient(
    pg: Engine,
) -> None:
    table = TABLE
    with pg.connect() as holder:
        holder.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        lock_timeout = raised(pg, "SET LOCAL lock_timeout = '50ms'", f"SELECT * FROM {table}")
        holder.rollback()
    assert is_transient(lock_timeout)

    # Two serializable transactions that each read what the other writes.
    first, second = pg.connect(), pg.connect()
    for conn in (first, second):
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
        conn.execute(text(f"SELECT count(*) FROM {table}"))
    first.execute(text(f"INSERT INTO {table} VALUES (10, 'x')"))
    second.execute(text(f"INSERT INTO {table} VALUES (11, 'y')"))
    first.commit()
    with pytest.raises(OperationalError, match="serialize") as serialization:
        second.commit()
    first.close()
    second.close()
    assert is_transient(serialization.value)

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    refused = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
    assert is_transient(raised(refused, "SELECT 1"))
    refused.dispose()


def test_sqlite_lock_is_transient_and_a_missing_table_is_not(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    engine = make_engine(f"sqlite:///{path}", busy_timeout_ms=50)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id int primary key)"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        locked = raised(engine, "INSERT INTO t VALUES (1)")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert is_transient(locked)
    assert not is_row_fault(locked)
    missing = raised(engine, "SELECT * FROM nowhere")
    assert not is_transient(missing)
    assert not is_row_fault(missing)
    duplicate = raised(engine, "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)")
    assert not is_transient(duplicate)
    assert is_row_fault(duplicate)
    surrogate = raised(engine, "INSERT INTO t VALUES ('a\ud800')")
    assert is_row_fault(surrogate)
    assert not is_transient(ValueError("not a database error"))
    engine.dispose()
