"""loop learning keys and run details

Learnings get their per-experiment id ("L1", "L2", ...) that prompts and the proposer's
operations refer to, and why they were superseded or pruned; loop runs record the kind of
LLM error and whether they asked for proposals at all.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 21:18:14.162143
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows written before this revision get "L<row id>", unique within their experiment,
    # before the constraint is created; the server defaults only serve that backfill.
    with op.batch_alter_table('learning', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('status_reason', sa.Text(), nullable=True))
    op.execute(sa.text("UPDATE learning SET key = 'L' || CAST(id AS VARCHAR(15))"))
    with op.batch_alter_table('learning', schema=None) as batch_op:
        batch_op.alter_column('key', server_default=None, existing_type=sqlmodel.sql.sqltypes.AutoString(length=16), existing_nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_learning_experiment_id_key'), ['experiment_id', 'key'])

    with op.batch_alter_table('loop_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('requested_proposals', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('loop_run', schema=None) as batch_op:
        batch_op.alter_column('requested_proposals', server_default=None, existing_type=sa.Boolean(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('loop_run', schema=None) as batch_op:
        batch_op.drop_column('requested_proposals')
        batch_op.drop_column('error_kind')

    with op.batch_alter_table('learning', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_learning_experiment_id_key'), type_='unique')
        batch_op.drop_column('status_reason')
        batch_op.drop_column('key')
