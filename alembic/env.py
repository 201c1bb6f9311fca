"""Alembic environment: migrations run on SQLite and PostgreSQL alike."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, pool

import service.models  # noqa: F401  (registers every table on the metadata)
from alembic import context
from service.models import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get(
    "BANDITLOOP_DATABASE_URL", "sqlite:///data/banditloop.db"
)


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = create_engine(url, poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
