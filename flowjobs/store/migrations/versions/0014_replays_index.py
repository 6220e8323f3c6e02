"""An index of replays by the run they replay (`replay_of`), holding only runs that are replays.

`runs replay --status failed` skips runs that were replayed already, and `runs show` lists a
run's replays: both look runs up by `replay_of`. Without an index that was a scan of the whole
table. The index is partial (`WHERE replay_of IS NOT NULL`): an ordinary run, which is no
replay, writes no entry into it, so a trigger touches no page more than before.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    where = sa.text("replay_of IS NOT NULL")
    op.create_index(
        "flowjobs_runs_replays", "flowjobs_runs", ["replay_of"], if_not_exists=True,
        sqlite_where=where, postgresql_where=where,
    )


def downgrade() -> None:
    op.drop_index("flowjobs_runs_replays", "flowjobs_runs", if_exists=True)
