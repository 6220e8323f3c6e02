"""Schedule state (the last enqueued slot of each schedule) and a lookup index for slot runs.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flowjobs_schedules",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("last_slot", sa.BigInteger),
        sa.Column("enabled", sa.SmallInteger),  # NULL: as configured; 0/1: set by `schedules enable|disable`
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("flowjobs_runs_idempotency", "flowjobs_runs", ["task", "idempotency_key"])
    # When is the next run due? (An idle PostgreSQL worker sleeps until then; NOTIFY wakes it
    # for new runs.)
    pending = "status IN ('queued', 'delayed', 'retrying')"
    op.create_index("flowjobs_runs_next_due", "flowjobs_runs", ["run_at"],
                    sqlite_where=sa.text(pending), postgresql_where=sa.text(pending))
    # For the pruner. Partial on finished runs so the planner never prefers it for a claim.
    finished = "status IN ('completed', 'failed', 'canceled', 'expired')"
    op.create_index("flowjobs_runs_finished", "flowjobs_runs", ["finished_at"],
                    sqlite_where=sa.text(finished), postgresql_where=sa.text(finished))


def downgrade() -> None:
    op.drop_index("flowjobs_runs_finished", "flowjobs_runs")
    op.drop_index("flowjobs_runs_next_due", "flowjobs_runs")
    op.drop_index("flowjobs_runs_idempotency", "flowjobs_runs")
    op.drop_table("flowjobs_schedules")
