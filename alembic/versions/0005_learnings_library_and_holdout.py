"""learnings library, holdout

Learnings belong to a library that experiments share (one per brand or audience; a
"default" one for experiments that name none). A learning records where it held and where
it failed (per experiment and segment) and the channel it was learnt on. Experiments name
their library and may hold out a share of keyed units who always get the control arm;
decisions record whether they were such a holdout decision.

Existing learnings move to the default library; their keys become "L<row id>" (unique in
any library, since 0002 gave every row a key from its id or a per-experiment counter).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 10:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_LIBRARY = "default"


def upgrade() -> None:
    op.create_table(
        "library",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("cap", sa.Integer(), nullable=False, server_default="20"),
        sa.Column("half_life_days", sa.Float(), nullable=False, server_default="60"),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library")),
    )
    with op.batch_alter_table("library", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_library_name"), ["name"], unique=True)
    op.execute(
        sa.text(
            "INSERT INTO library (name, description, cap, half_life_days, created_at) "
            "VALUES (:name, 'for experiments that name no library', 20, 60, CURRENT_TIMESTAMP)"
        ).bindparams(name=DEFAULT_LIBRARY)
    )

    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("library_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("holdout_share", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_experiment_library_id_library"), "library", ["library_id"], ["id"]
        )
        batch_op.create_index(batch_op.f("ix_experiment_library_id"), ["library_id"])
    op.execute(
        sa.text(
            "UPDATE experiment SET library_id = (SELECT id FROM library WHERE name = :name)"
        ).bindparams(name=DEFAULT_LIBRARY)
    )

    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("holdout", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    with op.batch_alter_table("learning", schema=None) as batch_op:
        batch_op.add_column(sa.Column("library_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.add_column(sa.Column("holds", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("failed", sa.JSON(), nullable=True))
        batch_op.drop_constraint("uq_learning_experiment_id_key", type_="unique")
    op.execute(
        sa.text(
            "UPDATE learning SET key = 'L' || CAST(id AS VARCHAR(15)), "
            "library_id = (SELECT library_id FROM experiment "
            "WHERE experiment.id = learning.experiment_id), "
            "channel = (SELECT channel FROM experiment "
            "WHERE experiment.id = learning.experiment_id)"
        )
    )
    with op.batch_alter_table("learning", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_learning_library_id_library"), "library", ["library_id"], ["id"]
        )
        batch_op.create_index(batch_op.f("ix_learning_library_id"), ["library_id"])
        batch_op.create_unique_constraint(
            batch_op.f("uq_learning_library_id_key"), ["library_id", "key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("learning", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_learning_library_id_key"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_learning_library_id"))
        batch_op.drop_constraint(batch_op.f("fk_learning_library_id_library"), type_="foreignkey")
        batch_op.drop_column("failed")
        batch_op.drop_column("holds")
        batch_op.drop_column("channel")
        batch_op.drop_column("library_id")
        batch_op.create_unique_constraint(
            batch_op.f("uq_learning_experiment_id_key"), ["experiment_id", "key"]
        )
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.drop_column("holdout")
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiment_library_id"))
        batch_op.drop_constraint(batch_op.f("fk_experiment_library_id_library"), type_="foreignkey")
        batch_op.drop_column("holdout_share")
        batch_op.drop_column("library_id")
    with op.batch_alter_table("library", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_library_name"))
    op.drop_table("library")
