"""stat total: one row per experiment and epoch, bumped with every write of its buckets

The policy refresher decides every pass which running experiments have new evidence. It did
so with an aggregate over every statistics bucket of every running experiment, which grows
with each experiment's history (an hour, an arm and a metric per row): a week of five arms
and four metrics for 1,000 experiments is 3.4 million rows, about 4 s on PostgreSQL, every
2 s. This table keeps one row per experiment and epoch, written in the same transaction as
the buckets, so the question costs one row per experiment. Existing buckets are summed into
it here.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stat_total",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("experiment_id", "epoch", name=op.f("pk_stat_total")),
    )
    op.execute(
        "INSERT INTO stat_total (experiment_id, epoch, version, count) "
        "SELECT experiment_id, epoch, 1, COALESCE(SUM(count), 0) "
        "FROM stat_bucket GROUP BY experiment_id, epoch"
    )


def downgrade() -> None:
    op.drop_table("stat_total")
