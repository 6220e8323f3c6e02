"""Crashes have their own budget: `flowjobs_runs.crashes` counts attempts lost to a dead or
stalled worker (or to a fault of the program, such as an import error), which do not count
against `max_attempts`; `[run] max_crashes` bounds them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("flowjobs_runs", sa.Column("crashes", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("flowjobs_runs") as batch:
        batch.drop_column("crashes")
