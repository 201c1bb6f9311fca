"""learning tags

A learning records the arm tags its claim is about (given with the operation or read from
the claim), which the loop's per-segment verdicts judge it on. Existing learnings get
none: their tags are read from the claim when a run judges them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("learning", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("learning", schema=None) as batch_op:
        batch_op.drop_column("tags")
