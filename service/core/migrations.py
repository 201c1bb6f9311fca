"""Run Alembic programmatically: the only way the schema is created, in tests too."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from alembic import command

ROOT = Path(__file__).resolve().parents[2]
# An arbitrary constant: the PostgreSQL advisory lock that serialises concurrent upgrades.
MIGRATION_LOCK = 0x62616E64


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        # A fresh machine has no data/ folder yet: SQLite creates the file, not its folder.
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    with _upgrade_lock(database_url):
        command.upgrade(alembic_config(database_url), revision)


@contextmanager
def _upgrade_lock(database_url: str) -> Iterator[None]:
    """Replicas started together on a fresh PostgreSQL database all run the migrations: one
    at a time, so the second finds the schema at head instead of failing on CREATE TABLE.
    (SQLite takes one writer and one process anyway.)"""
    if make_url(database_url).get_backend_name() != "postgresql":
        yield
        return
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                conn.commit()
    finally:
        engine.dispose()


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
