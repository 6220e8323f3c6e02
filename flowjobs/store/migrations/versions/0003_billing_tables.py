"""Billing tables (domain spec §2): organizations … checkout_sessions.

Revision ID: 0003
Revises: 0002

Generated once from flowjobs.billing.models with Alembic's autogenerate, then frozen: a
migration never imports the models, so later model changes need a new revision (a test
compares the migrated schema with the models).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('billing_period_items',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('billing_period_id', sa.String(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('description', sa.String(), nullable=False),
    sa.Column('discount_redemption_id', sa.String(), nullable=True),
    sa.Column('type', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_billing_period_items_billing_period_id'), 'billing_period_items', ['billing_period_id'], unique=False)
    op.create_table('billing_periods',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('subscription_id', sa.String(), nullable=False),
    sa.Column('start_date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end_date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('trial_period', sa.Boolean(), nullable=False),
    sa.Column('prorated_period', sa.Boolean(), nullable=True),
    sa.CheckConstraint("status IN ('upcoming', 'active', 'completed', 'canceled', 'past_due', 'scheduled_to_cancel')", name='ck_status'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_billing_periods_end_date', 'billing_periods', ['end_date'], unique=False)
    op.create_index(op.f('ix_billing_periods_subscription_id'), 'billing_periods', ['subscription_id'], unique=False)
    op.create_table('billing_runs',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('billing_period_id', sa.String(), nullable=False),
    sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('stripe_payment_intent_id', sa.String(), nullable=True),
    sa.Column('attempt_number', sa.Integer(), nullable=False),
    sa.Column('error_details', sa.JSON(), nullable=True),
    sa.Column('subscription_id', sa.String(), nullable=False),
    sa.Column('payment_method_id', sa.String(), nullable=False),
    sa.Column('last_stripe_payment_intent_event_timestamp', sa.DateTime(timezone=True), nullable=True),
    sa.Column('is_adjustment', sa.Boolean(), nullable=False),
    sa.Column('claimed_by_run', sa.String(), nullable=True),
    sa.CheckConstraint("status IN ('scheduled', 'started', 'awaiting_payment_confirmation', 'succeeded', 'failed', 'abandoned', 'aborted')", name='ck_status'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_billing_runs_billing_period_id'), 'billing_runs', ['billing_period_id'], unique=False)
    op.create_index('ix_billing_runs_due', 'billing_runs', ['status', 'scheduled_for'], unique=False)
    op.create_index(op.f('ix_billing_runs_subscription_id'), 'billing_runs', ['subscription_id'], unique=False)
    op.create_table('checkout_sessions',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('type', sa.String(), nullable=False),
    sa.Column('organization_id', sa.String(), nullable=False),
    sa.Column('customer_id', sa.String(), nullable=True),
    sa.Column('price_id', sa.String(), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('target_subscription_id', sa.String(), nullable=True),
    sa.Column('stripe_setup_intent_id', sa.String(), nullable=True),
    sa.Column('stripe_payment_intent_id', sa.String(), nullable=True),
    sa.Column('customer_email', sa.String(), nullable=True),
    sa.Column('customer_name', sa.String(), nullable=True),
    sa.Column('expires', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('open', 'pending', 'succeeded', 'failed', 'expired')", name='ck_status'),
    sa.CheckConstraint("type IN ('product', 'purchase', 'add_payment_method', 'activate_subscription')", name='ck_type'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_checkout_sessions_created_at', 'checkout_sessions', ['created_at'], unique=False)
    op.create_index(op.f('ix_checkout_sessions_organization_id'), 'checkout_sessions', ['organization_id'], unique=False)
    op.create_table('countries',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('code', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_table('customers',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('organization_id', sa.String(), nullable=False),
    sa.Column('email', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('invoice_number_base', sa.String(), nullable=False),
    sa.Column('invoice_number_next', sa.Integer(), nullable=False),
    sa.Column('archived', sa.Boolean(), nullable=False),
    sa.Column('stripe_customer_id', sa.String(), nullable=True),
    sa.Column('tax_id', sa.String(), nullable=True),
    sa.Column('billing_address', sa.JSON(), nullable=True),
    sa.Column('external_id', sa.String(), nullable=False),
    sa.Column('user_id', sa.String(), nullable=True),
    sa.Column('pricing_model_id', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_customers_organization_id'), 'customers', ['organization_id'], unique=False)
    op.create_table('discount_redemptions',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('discount_id', sa.String(), nullable=False),
    sa.Column('purchase_id', sa.String(), nullable=True),
    sa.Column('subscription_id', sa.String(), nullable=True),
    sa.Column('discount_name', sa.String(), nullable=False),
    sa.Column('discount_code', sa.String(), nullable=False),
    sa.Column('discount_amount', sa.BigInteger(), nullable=False),
    sa.Column('discount_amount_type', sa.String(), nullable=False),
    sa.Column('duration', sa.String(), nullable=False),
    sa.Column('number_of_payments', sa.Integer(), nullable=True),
    sa.Column('fully_redeemed', sa.Boolean(), nullable=False),
    sa.CheckConstraint("discount_amount_type IN ('percent', 'fixed')", name='ck_discount_amount_type'),
    sa.CheckConstraint("duration IN ('once', 'forever', 'number_of_payments')", name='ck_duration'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_discount_redemptions_subscription_id'), 'discount_redemptions', ['subscription_id'], unique=False)
    op.create_table('events',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('type', sa.String(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('object_entity', sa.String(), nullable=True),
    sa.Column('object_id', sa.String(), nullable=True),
    sa.Column('hash', sa.String(), nullable=False),
    sa.Column('organization_id', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('hash')
    )
    op.create_index(op.f('ix_events_organization_id'), 'events', ['organization_id'], unique=False)
    op.create_table('fee_calculations',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('organization_id', sa.String(), nullable=False),
    sa.Column('billing_period_id', sa.String(), nullable=True),
    sa.Column('checkout_session_id', sa.String(), nullable=True),
    sa.Column('purchase_id', sa.String(), nullable=True),
    sa.Column('billing_run_id', sa.String(), nullable=True),
    sa.Column('payment_method_type', sa.String(), nullable=False),
    sa.Column('base_amount', sa.BigInteger(), nullable=False),
    sa.Column('discount_amount_fixed', sa.BigInteger(), nullable=False),
    sa.Column('pretaxTotal', sa.BigInteger(), nullable=False),
    sa.Column('taxAmountFixed', sa.BigInteger(), nullable=False),
    sa.Column('flowglad_fee_percentage', sa.String(), nullable=False),
    sa.Column('mor_surcharge_percentage', sa.String(), nullable=False),
    sa.Column('international_fee_percentage', sa.String(), nullable=False),
    sa.Column('payment_method_fee_fixed', sa.BigInteger(), nullable=False),
    sa.Column('application_fee', sa.BigInteger(), nullable=False),
    sa.Column('stripeTaxCalculationId', sa.String(), nullable=True),
    sa.Column('stripeTaxTransactionId', sa.String(), nullable=True),
    sa.Column('currency', sa.String(), nullable=False),
    sa.Column('type', sa.String(), nullable=False),
    sa.Column('billing_address', sa.JSON(), nullable=True),
    sa.Column('internalNotes', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_fee_calculations_billing_period_id'), 'fee_calculations', ['billing_period_id'], unique=False)
    op.create_index(op.f('ix_fee_calculations_checkout_session_id'), 'fee_calculations', ['checkout_session_id'], unique=False)
    op.create_index(op.f('ix_fee_calculations_organization_id'), 'fee_calculations', ['organization_id'], unique=False)
    op.create_table('invoice_line_items',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('invoice_id', sa.String(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('price_id', sa.String(), nullable=True),
    sa.Column('description', sa.String(), nullable=True),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('billing_run_id', sa.String(), nullable=True),
    sa.Column('ledger_account_id', sa.String(), nullable=True),
    sa.Column('ledger_account_credit', sa.Integer(), nullable=True),
    sa.Column('type', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_invoice_line_items_invoice_id'), 'invoice_line_items', ['invoice_id'], unique=False)
    op.create_table('invoices',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('purchase_id', sa.String(), nullable=True),
    sa.Column('invoice_number', sa.String(), nullable=False),
    sa.Column('invoice_date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('billing_period_id', sa.String(), nullable=True),
    sa.Column('due_date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stripe_payment_intent_id', sa.String(), nullable=True),
    sa.Column('customer_id', sa.String(), nullable=False),
    sa.Column('organization_id', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('subscription_id', sa.String(), nullable=True),
    sa.Column('billing_run_id', sa.String(), nullable=True),
    sa.Column('billing_period_start_date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('billing_period_end_date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('owner_membership_id', sa.String(), nullable=True),
    sa.Column('pdf_url', sa.String(), nullable=True),
    sa.Column('receipt_pdf_url', sa.String(), nullable=True),
    sa.Column('memo', sa.String(), nullable=True),
    sa.Column('bank_payment_only', sa.Boolean(), nullable=False),
    sa.Column('type', sa.String(), nullable=False),
    sa.Column('currency', sa.String(), nullable=False),
    sa.Column('tax_amount', sa.BigInteger(), nullable=True),
    sa.Column('subtotal', sa.BigInteger(), nullable=True),
    sa.Column('stripe_tax_calculation_id', sa.String(), nullable=True),
    sa.Column('stripe_tax_transaction_id', sa.String(), nullable=True),
    sa.Column('tax_type', sa.String(), nullable=True),
    sa.Column('tax_country', sa.String(), nullable=True),
    sa.Column('tax_state', sa.String(), nullable=True),
    sa.Column('tax_rate_percentage', sa.String(), nullable=True),
    sa.Column('application_fee', sa.BigInteger(), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'open', 'paid', 'uncollectible', 'void', 'refunded', 'partially_refunded', 'awaiting_payment_confirmation')", name='ck_status'),
    sa.CheckConstraint("type IN ('subscription', 'purchase', 'standalone')", name='ck_type'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('invoice_number')
    )
    op.create_index(op.f('ix_invoices_billing_period_id'), 'invoices', ['billing_period_id'], unique=False)
    op.create_index(op.f('ix_invoices_customer_id'), 'invoices', ['customer_id'], unique=False)
    op.create_index(op.f('ix_invoices_organization_id'), 'invoices', ['organization_id'], unique=False)
    op.create_table('memberships',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('user_id', sa.String(), nullable=False),
    sa.Column('organization_id', sa.String(), nullable=False),
    sa.Column('role', sa.String(), nullable=False),
    sa.Column('notification_preferences', sa.JSON(), nullable=True),
    sa.Column('deactivated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role IN ('owner', 'member')", name='ck_role'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_memberships_organization_id'), 'memberships', ['organization_id'], unique=False)
    op.create_index(op.f('ix_memberships_user_id'), 'memberships', ['user_id'], unique=False)
    op.create_table('organizations',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('stripe_account_id', sa.String(), nullable=True),
    sa.Column('country_id', sa.String(), nullable=False),
    sa.Column('logo_url', sa.String(), nullable=True),
    sa.Column('billing_address', sa.JSON(), nullable=True),
    sa.Column('contact_email', sa.String(), nullable=True),
    sa.Column('payouts_enabled', sa.Boolean(), nullable=False),
    sa.Column('onboarding_status', sa.String(), nullable=True),
    sa.Column('fee_percentage', sa.String(), nullable=False),
    sa.Column('default_currency', sa.String(), nullable=False),
    sa.Column('stripe_connect_contract_type', sa.String(), nullable=False),
    sa.Column('allow_multiple_subscriptions_per_customer', sa.Boolean(), nullable=False),
    sa.Column('feature_flags', sa.JSON(), nullable=True),
    sa.Column('external_id', sa.String(), nullable=True),
    sa.Column('upfront_processing_credits', sa.BigInteger(), nullable=False),
    sa.Column('monthly_billing_volume_free_tier', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("stripe_connect_contract_type IN ('platform', 'merchant_of_record')", name='ck_stripe_connect_contract_type'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('stripe_account_id')
    )
    op.create_index(op.f('ix_organizations_country_id'), 'organizations', ['country_id'], unique=False)
    op.create_table('payment_methods',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('customer_id', sa.String(), nullable=False),
    sa.Column('billing_details', sa.JSON(), nullable=False),
    sa.Column('type', sa.String(), nullable=False),
    sa.Column('default', sa.Boolean(), nullable=False),
    sa.Column('payment_method_data', sa.JSON(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('stripe_payment_method_id', sa.String(), nullable=True),
    sa.Column('external_id', sa.String(), nullable=True),
    sa.CheckConstraint("type IN ('card', 'link', 'us_bank_account', 'sepa_debit')", name='ck_type'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_payment_methods_customer_id'), 'payment_methods', ['customer_id'], unique=False)
    op.create_table('payments',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('invoice_id', sa.String(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('payment_method', sa.String(), nullable=False),
    sa.Column('currency', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('charge_date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('settlement_date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('description', sa.String(), nullable=True),
    sa.Column('receipt_number', sa.String(), nullable=True),
    sa.Column('receipt_url', sa.String(), nullable=True),
    sa.Column('organization_id', sa.String(), nullable=False),
    sa.Column('customer_id', sa.String(), nullable=False),
    sa.Column('purchase_id', sa.String(), nullable=True),
    sa.Column('subscription_id', sa.String(), nullable=True),
    sa.Column('payment_method_id', sa.String(), nullable=True),
    sa.Column('billing_period_id', sa.String(), nullable=True),
    sa.Column('billing_run_id', sa.String(), nullable=True),
    sa.Column('stripe_payment_intent_id', sa.String(), nullable=True),
    sa.Column('stripe_charge_id', sa.String(), nullable=True),
    sa.Column('subtotal', sa.BigInteger(), nullable=True),
    sa.Column('tax_amount', sa.BigInteger(), nullable=True),
    sa.Column('tax_country', sa.String(), nullable=True),
    sa.Column('refunded', sa.Boolean(), nullable=False),
    sa.Column('refunded_amount', sa.BigInteger(), nullable=True),
    sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failure_message', sa.String(), nullable=True),
    sa.Column('failure_code', sa.String(), nullable=True),
    sa.CheckConstraint("status IN ('canceled', 'failed', 'refunded', 'processing', 'succeeded', 'requires_confirmation', 'requires_action')", name='ck_status'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('stripe_charge_id')
    )
    op.create_index(op.f('ix_payments_billing_period_id'), 'payments', ['billing_period_id'], unique=False)
    op.create_index(op.f('ix_payments_billing_run_id'), 'payments', ['billing_run_id'], unique=False)
    op.create_index(op.f('ix_payments_customer_id'), 'payments', ['customer_id'], unique=False)
    op.create_index(op.f('ix_payments_invoice_id'), 'payments', ['invoice_id'], unique=False)
    op.create_index(op.f('ix_payments_organization_id'), 'payments', ['organization_id'], unique=False)
    op.create_index('ix_payments_pending', 'payments', ['status', 'updated_at'], unique=False)
    op.create_index(op.f('ix_payments_stripe_payment_intent_id'), 'payments', ['stripe_payment_intent_id'], unique=False)
    op.create_index(op.f('ix_payments_subscription_id'), 'payments', ['subscription_id'], unique=False)
    op.create_table('prices',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('type', sa.String(), nullable=False),
    sa.Column('interval_unit', sa.String(), nullable=True),
    sa.Column('intervalCount', sa.Integer(), nullable=True),
    sa.Column('trial_period_days', sa.Integer(), nullable=True),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('unit_price', sa.BigInteger(), nullable=False),
    sa.Column('usage_events_per_unit', sa.Integer(), nullable=True),
    sa.Column('product_id', sa.String(), nullable=True),
    sa.Column('usage_meter_id', sa.String(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('currency', sa.String(), nullable=False),
    sa.Column('slug', sa.String(), nullable=True),
    sa.Column('name', sa.String(), nullable=True),
    sa.CheckConstraint("type IN ('single_payment', 'subscription', 'usage')", name='ck_type'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_prices_product_id'), 'prices', ['product_id'], unique=False)
    op.create_table('products',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('description', sa.String(), nullable=True),
    sa.Column('organization_id', sa.String(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('default', sa.Boolean(), nullable=False),
    sa.Column('slug', sa.String(), nullable=True),
    sa.Column('pricing_model_id', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_products_organization_id'), 'products', ['organization_id'], unique=False)
    op.create_table('subscription_items',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('subscription_id', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=True),
    sa.Column('added_date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('price_id', sa.String(), nullable=True),
    sa.Column('unit_price', sa.BigInteger(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('type', sa.String(), nullable=False),
    sa.Column('external_id', sa.String(), nullable=True),
    sa.Column('expired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('manually_created', sa.Boolean(), nullable=False),
    sa.CheckConstraint("type IN ('usage', 'static')", name='ck_type'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_subscription_items_subscription_id'), 'subscription_items', ['subscription_id'], unique=False)
    op.create_table('subscriptions',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('start_date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('customer_id', sa.String(), nullable=False),
    sa.Column('organization_id', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('default_payment_method_id', sa.String(), nullable=True),
    sa.Column('backup_payment_method_id', sa.String(), nullable=True),
    sa.Column('stripe_setup_intent_id', sa.String(), nullable=True),
    sa.Column('trial_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('current_billing_period_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('current_billing_period_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('canceled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_scheduled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancellation_reason', sa.String(), nullable=True),
    sa.Column('replaced_by_subscription_id', sa.String(), nullable=True),
    sa.Column('is_free_plan', sa.Boolean(), nullable=False),
    sa.Column('do_not_charge', sa.Boolean(), nullable=False),
    sa.Column('price_id', sa.String(), nullable=False),
    sa.Column('run_billing_at_period_start', sa.Boolean(), nullable=False),
    sa.Column('interval', sa.String(), nullable=True),
    sa.Column('interval_count', sa.Integer(), nullable=True),
    sa.Column('billing_cycle_anchor_date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('name', sa.String(), nullable=True),
    sa.Column('renews', sa.Boolean(), nullable=False),
    sa.Column('external_id', sa.String(), nullable=True),
    sa.Column('scheduled_adjustment_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('trialing', 'credit_trial', 'active', 'past_due', 'unpaid', 'cancellation_scheduled', 'incomplete', 'incomplete_expired', 'canceled', 'paused')", name='ck_status'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('stripe_setup_intent_id')
    )
    op.create_index('ix_subscriptions_cancel_scheduled_at', 'subscriptions', ['cancel_scheduled_at'], unique=False)
    op.create_index(op.f('ix_subscriptions_customer_id'), 'subscriptions', ['customer_id'], unique=False)
    op.create_index(op.f('ix_subscriptions_organization_id'), 'subscriptions', ['organization_id'], unique=False)
    op.create_index(op.f('ix_subscriptions_price_id'), 'subscriptions', ['price_id'], unique=False)
    op.create_table('users',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('email', sa.String(), nullable=True),
    sa.Column('name', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('users')
    op.drop_index(op.f('ix_subscriptions_price_id'), table_name='subscriptions')
    op.drop_index(op.f('ix_subscriptions_organization_id'), table_name='subscriptions')
    op.drop_index(op.f('ix_subscriptions_customer_id'), table_name='subscriptions')
    op.drop_index('ix_subscriptions_cancel_scheduled_at', table_name='subscriptions')
    op.drop_table('subscriptions')
    op.drop_index(op.f('ix_subscription_items_subscription_id'), table_name='subscription_items')
    op.drop_table('subscription_items')
    op.drop_index(op.f('ix_products_organization_id'), table_name='products')
    op.drop_table('products')
    op.drop_index(op.f('ix_prices_product_id'), table_name='prices')
    op.drop_table('prices')
    op.drop_index(op.f('ix_payments_subscription_id'), table_name='payments')
    op.drop_index(op.f('ix_payments_stripe_payment_intent_id'), table_name='payments')
    op.drop_index('ix_payments_pending', table_name='payments')
    op.drop_index(op.f('ix_payments_organization_id'), table_name='payments')
    op.drop_index(op.f('ix_payments_invoice_id'), table_name='payments')
    op.drop_index(op.f('ix_payments_customer_id'), table_name='payments')
    op.drop_index(op.f('ix_payments_billing_run_id'), table_name='payments')
    op.drop_index(op.f('ix_payments_billing_period_id'), table_name='payments')
    op.drop_table('payments')
    op.drop_index(op.f('ix_payment_methods_customer_id'), table_name='payment_methods')
    op.drop_table('payment_methods')
    op.drop_index(op.f('ix_organizations_country_id'), table_name='organizations')
    op.drop_table('organizations')
    op.drop_index(op.f('ix_memberships_user_id'), table_name='memberships')
    op.drop_index(op.f('ix_memberships_organization_id'), table_name='memberships')
    op.drop_table('memberships')
    op.drop_index(op.f('ix_invoices_organization_id'), table_name='invoices')
    op.drop_index(op.f('ix_invoices_customer_id'), table_name='invoices')
    op.drop_index(op.f('ix_invoices_billing_period_id'), table_name='invoices')
    op.drop_table('invoices')
    op.drop_index(op.f('ix_invoice_line_items_invoice_id'), table_name='invoice_line_items')
    op.drop_table('invoice_line_items')
    op.drop_index(op.f('ix_fee_calculations_organization_id'), table_name='fee_calculations')
    op.drop_index(op.f('ix_fee_calculations_checkout_session_id'), table_name='fee_calculations')
    op.drop_index(op.f('ix_fee_calculations_billing_period_id'), table_name='fee_calculations')
    op.drop_table('fee_calculations')
    op.drop_index(op.f('ix_events_organization_id'), table_name='events')
    op.drop_table('events')
    op.drop_index(op.f('ix_discount_redemptions_subscription_id'), table_name='discount_redemptions')
    op.drop_table('discount_redemptions')
    op.drop_index(op.f('ix_customers_organization_id'), table_name='customers')
    op.drop_table('customers')
    op.drop_table('countries')
    op.drop_index(op.f('ix_checkout_sessions_organization_id'), table_name='checkout_sessions')
    op.drop_index('ix_checkout_sessions_created_at', table_name='checkout_sessions')
    op.drop_table('checkout_sessions')
    op.drop_index(op.f('ix_billing_runs_subscription_id'), table_name='billing_runs')
    op.drop_index('ix_billing_runs_due', table_name='billing_runs')
    op.drop_index(op.f('ix_billing_runs_billing_period_id'), table_name='billing_runs')
    op.drop_table('billing_runs')
    op.drop_index(op.f('ix_billing_periods_subscription_id'), table_name='billing_periods')
    op.drop_index('ix_billing_periods_end_date', table_name='billing_periods')
    op.drop_table('billing_periods')
    op.drop_index(op.f('ix_billing_period_items_billing_period_id'), table_name='billing_period_items')
    op.drop_table('billing_period_items')
