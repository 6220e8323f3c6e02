"""One-time checkout payments (issue 16 §2, docs/billing.md "One-time purchases"):

- `purchases` (spec §2): what a checkout sells once — created on the session's first charge
  when the session has none, its status kept in step with its payments.
- `checkout_sessions.purchase_id`: the purchase the session pays (given for `purchase`
  sessions, set by flowjobs for `product` sessions of a one-time price).
- `checkout_sessions.discount_redemption_id`: the discount the session applies (upstream's
  session names a `discounts` row; flowjobs has no discounts table, so the redemption is made
  with the session and gets its `purchase_id` when the purchase exists).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PURCHASE_STATUS = "'open', 'pending', 'failed', 'paid', 'refunded', 'partial_refund', 'fraudulent'"


def upgrade() -> None:
    op.create_table(
        "purchases",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("organization_id", sa.String(), nullable=False),
        sa.Column("price_id", sa.String(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price_type", sa.String(), nullable=False),
        sa.Column("trial_period_days", sa.Integer(), nullable=True),
        sa.Column("price_per_billing_cycle", sa.BigInteger(), nullable=True),
        sa.Column("interval_unit", sa.String(), nullable=True),
        sa.Column("interval_count", sa.Integer(), nullable=True),
        sa.Column("first_invoice_value", sa.BigInteger(), nullable=True),
        sa.Column("total_purchase_value", sa.BigInteger(), nullable=True),
        sa.Column("purchase_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("billing_address", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.CheckConstraint(f"status IN ({PURCHASE_STATUS})", name="ck_status"),
        sa.CheckConstraint(
            "price_type IN ('single_payment', 'subscription', 'usage')", name="ck_price_type"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_purchases_customer_id"), "purchases", ["customer_id"], unique=False)
    op.create_index(
        op.f("ix_purchases_organization_id"), "purchases", ["organization_id"], unique=False
    )
    with op.batch_alter_table("checkout_sessions") as batch:
        batch.add_column(sa.Column("purchase_id", sa.String(), nullable=True))
        batch.add_column(sa.Column("discount_redemption_id", sa.String(), nullable=True))
        batch.create_index("ix_checkout_sessions_purchase_id", ["purchase_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("checkout_sessions") as batch:
        batch.drop_index("ix_checkout_sessions_purchase_id")
        batch.drop_column("discount_redemption_id")
        batch.drop_column("purchase_id")
    op.drop_index(op.f("ix_purchases_organization_id"), table_name="purchases")
    op.drop_index(op.f("ix_purchases_customer_id"), table_name="purchases")
    op.drop_table("purchases")
