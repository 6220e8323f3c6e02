"""Plan changes with proration (issue 16 §1, docs/billing.md "Plan changes"):

- `billing_runs.adjustment_params`: an adjustment billing run's `adjustmentParams` (the new
  items, the proration item, timing, previous items). Stored on the run, not only sent in the
  job payload, so every path that executes the run (the adjustment's trigger, a retry, the
  failure hook's requeue, the hourly fan-out) has them and the items are swapped after the
  payment succeeds however the run was reached (upstream's cron path had none and panicked).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("billing_runs") as batch:
        batch.add_column(sa.Column("adjustment_params", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("billing_runs") as batch:
        batch.drop_column("adjustment_params")
