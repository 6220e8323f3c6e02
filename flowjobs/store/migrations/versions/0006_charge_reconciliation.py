"""Billing runs record what flowjobs knows about their charge, so an unknown outcome is
reconciled with Stripe before any new attempt (docs/billing.md, "A billing run charges at most
once"):

- `billing_runs.confirm_sent_at`: written (and committed) just before the PaymentIntent's
  confirmation is sent; from then on Stripe may have charged.
- `billing_runs.outcome_unknown_since`: set when a confirmation's answer was lost (a read
  timeout, a connection dropped after sending, a worker that died); cleared when Stripe has
  been asked and the outcome recorded.
- `billing_runs.requeues`: how many times a billing run whose job failed for good, uncharged,
  was put back to `scheduled` (bounded by `[billing] max_requeues`).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("billing_runs") as batch:
        batch.add_column(sa.Column("confirm_sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("outcome_unknown_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("requeues", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("billing_runs") as batch:
        batch.drop_column("requeues")
        batch.drop_column("outcome_unknown_since")
        batch.drop_column("confirm_sent_at")
