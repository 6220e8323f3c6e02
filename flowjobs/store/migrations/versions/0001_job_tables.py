"""Job tables: runs (the queue), attempts, logs.

Times are integer epoch milliseconds (UTC). `dedup_key` holds the idempotency key while it
is live (unique per task); it is cleared when the key is released (run failed, TTL passed)
while `idempotency_key` keeps the value for display.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PENDING = "status IN ('queued', 'delayed', 'retrying')"


def upgrade() -> None:
    op.create_table(
        "flowjobs_runs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("run_at", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("finished_at", sa.BigInteger),
        sa.Column("attempt_started_at", sa.BigInteger),
        sa.Column("lease_expires_at", sa.BigInteger),
        sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
        sa.Column("worker", sa.Text),
        sa.Column("cancel_requested", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("dedup_key", sa.Text),
        sa.Column("idempotency_expires_at", sa.BigInteger),
        sa.Column("payload_hash", sa.Text, nullable=False),
        sa.Column("parent_id", sa.Text),
        sa.Column("replay_of", sa.Text),
    )
    op.create_index("flowjobs_runs_dedup", "flowjobs_runs", ["task", "dedup_key"], unique=True)
    op.create_index(
        "flowjobs_runs_claim", "flowjobs_runs", ["priority", "run_at", "id"],
        sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING),
    )
    op.create_index(
        "flowjobs_runs_leases", "flowjobs_runs", ["lease_expires_at"],
        sqlite_where=sa.text("status = 'executing'"), postgresql_where=sa.text("status = 'executing'"),
    )
    op.create_index("flowjobs_runs_created", "flowjobs_runs", ["created_at"])
    op.create_index("flowjobs_runs_task_created", "flowjobs_runs", ["task", "created_at"])  # runs list --task
    op.create_index("flowjobs_runs_parent", "flowjobs_runs", ["parent_id"])

    op.create_table(
        "flowjobs_attempts",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("worker", sa.Text),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("finished_at", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("traceback", sa.Text),
        sa.Column("duration_ms", sa.BigInteger),
    )
    op.create_table(
        "flowjobs_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("flowjobs_logs_run", "flowjobs_logs", ["run_id", "id"])


def downgrade() -> None:
    op.drop_table("flowjobs_logs")
    op.drop_table("flowjobs_attempts")
    op.drop_table("flowjobs_runs")
