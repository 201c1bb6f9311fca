"""stat bucket exposure offset squares

Each statistics bucket also keeps the summed squares of the seconds from the bucket's start to
each exposure's decision, so the policy knows the spread of a cohort's ages as well as their
mean: F is concave over most of its range, so an hour whose decisions span it (a send at 10:00
and one at 10:45) is over-discounted when taken at its mean age alone. NULL stays NULL, as for
the offset sum: rows written before this revision keep their mean and count as one age.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stat_bucket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("offset_seconds_sq_sum", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stat_bucket", schema=None) as batch_op:
        batch_op.drop_column("offset_seconds_sq_sum")
