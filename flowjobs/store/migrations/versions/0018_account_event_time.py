"""The time of the newest Stripe `account.updated` event applied to each organisation, so that
an older event delivered late (Stripe does not deliver in order; a retry can come hours later)
no longer overwrites the onboarding state a newer one set.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(
            sa.Column("stripe_account_event_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("stripe_account_event_at")
