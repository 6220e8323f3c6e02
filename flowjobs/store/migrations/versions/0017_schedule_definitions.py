"""Each schedule's definition, as the newest scheduler process read it, so that processes
started before an edit of `flowjobs.toml` stop firing the old cron (docs/scheduling.md,
"Editing a schedule").

`definition` is the schedule's canonical JSON (task, cron, timezone, payload, catch-up,
enabled); `defined_at` when the process that wrote it read its configuration (epoch ms);
`definition_seen_at` the last time a process with that definition ticked it. A process whose
definition differs from a newer one stops firing the schedule until it is restarted, unless
the newer one has not been seen for ten minutes. Nullable columns added: nothing is rewritten,
and processes of the older version (which do not read them) go on until they are restarted.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("flowjobs_schedules", sa.Column("definition", sa.Text))
    op.add_column("flowjobs_schedules", sa.Column("defined_at", sa.BigInteger))
    op.add_column("flowjobs_schedules", sa.Column("definition_seen_at", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("flowjobs_schedules") as batch:
        batch.drop_column("definition_seen_at")
        batch.drop_column("defined_at")
        batch.drop_column("definition")
