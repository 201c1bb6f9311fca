"""console sessions, loop run actor

People sign in to the console by name with a review or admin key; each session is a row
(the token's digest, the person, the key, when it expires or ended), so signing out and
revoking the key end it on every replica. A loop run records who asked for it; an
experiment's changes (created, settings, status) record who made them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 08:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("person", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("ended_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_key.id"], name=op.f("fk_console_session_key_id_api_key")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_session")),
    )
    with op.batch_alter_table("console_session", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_console_session_token_digest"), ["token_digest"], unique=True
        )
        batch_op.create_index(batch_op.f("ix_console_session_key_id"), ["key_id"], unique=False)
    op.create_table(
        "experiment_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_experiment_change_experiment_id_experiment"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_change")),
    )
    with op.batch_alter_table("experiment_change", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_experiment_change_experiment_id"), ["experiment_id"], unique=False
        )
    with op.batch_alter_table("loop_run", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("loop_run", schema=None) as batch_op:
        batch_op.drop_column("actor")
    with op.batch_alter_table("experiment_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiment_change_experiment_id"))
    op.drop_table("experiment_change")
    with op.batch_alter_table("console_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_session_key_id"))
        batch_op.drop_index(batch_op.f("ix_console_session_token_digest"))
    op.drop_table("console_session")
