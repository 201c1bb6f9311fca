"""stat bucket exposure offsets

Each statistics bucket keeps the summed seconds from the bucket's start to each exposure's
decision, so the policy knows a cohort's mean age to the second (a send at 10:05 read at
10:08 is three minutes old, not "half an hour" and not "no age at all"). Hourly buckets stay
hourly: storage is unchanged, and rows written before this revision fall back to exposures
spread evenly over the part of their hour that has passed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 07:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('stat_bucket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('offset_seconds_sum', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('stat_bucket', schema=None) as batch_op:
        batch_op.drop_column('offset_seconds_sum')
