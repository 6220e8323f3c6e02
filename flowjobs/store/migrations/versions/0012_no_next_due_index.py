"""The claim index answers "when is the next run due"; the next-due index goes.

`flowjobs_runs_next_due` (run_at, over waiting runs) served only reads that ask for the
earliest waiting runs: an idle worker's "is anything due / when is the next run due", the
waiting-run alert, the dashboard's oldest waiting and upcoming runs. Yet every trigger wrote an
entry into it and every claim took one out: a page of every SQLite commit on the hot path, an
index of every PostgreSQL update. The claim index (priority, run_at, id, over the same waiting
runs) answers those reads too, one priority at a time: a recursive query steps from each
waiting priority to the next (`queries.WAITING_PRIORITIES`), a few index seeks per distinct
priority whatever the number of waiting runs (tests/store/test_next_due.py counts them).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

PENDING = "status IN ('queued', 'delayed', 'retrying')"


def upgrade() -> None:
    op.drop_index("flowjobs_runs_next_due", "flowjobs_runs", if_exists=True)


def downgrade() -> None:
    op.create_index(
        "flowjobs_runs_next_due", "flowjobs_runs", ["run_at"], if_not_exists=True,
        sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING),
    )
