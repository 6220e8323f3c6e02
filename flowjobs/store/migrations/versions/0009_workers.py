"""Workers record themselves: one row per worker process (id, host, pid, version, queues,
concurrency, started, last heartbeat, runs in flight, stopped), kept by its heartbeats, so
`flowjobs workers`, `doctor` and the dashboard can say which workers are alive.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flowjobs_workers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("queues", sa.Text, nullable=False),  # comma-separated; * = every queue
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
        sa.Column("in_flight", sa.Integer, nullable=False, server_default="0"),
        sa.Column("processed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("stopped_at", sa.BigInteger, nullable=True),
    )
    op.create_index("flowjobs_workers_heartbeat", "flowjobs_workers", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_table("flowjobs_workers")
