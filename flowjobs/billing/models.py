"""The Flowglad billing tables (spec §2) as SQLModel classes, on the jobs' database.

Conventions: ids `<prefix>_<21 chars>` (flowjobs.ids), money as BIGINT minor units next to an
upper-case `currency`, times as aware UTC datetimes (`UTCDateTime`), enum columns as text
holding the exact values of flowjobs.billing.enums (CHECK constraints keep them honest).
Only the columns the jobs read or write are modelled. Columns upstream names in camelCase
keep their names (`intervalCount`, `pretaxTotal`, …).

Deliberate additions (docs/billing.md): `customers.invoice_number_next` (race-free invoice
numbers), `billing_runs.claimed_by_run` (which job run executes it), `payments.billing_run_id`,
`checkout_sessions.purchase_id` and `.discount_redemption_id` (one-time checkout payments).
The schema itself is created by the migrations in flowjobs/store/migrations; a test checks that
the migrated schema matches these classes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String, Text
from sqlmodel import Field

from flowjobs.billing import enums as E
from flowjobs.store.tables import Base, Json, Money, Ref, Time, camel, one_of


class Live(Base):
    livemode: bool = False


class Country(Base, table=True):
    __tablename__ = "countries"
    name: str
    code: str = Field(unique=True)


class User(Base, table=True):
    __tablename__ = "users"
    email: str | None = None
    name: str | None = None


class Organization(Base, table=True):
    __tablename__ = "organizations"
    __table_args__ = (one_of("stripe_connect_contract_type", E.StripeConnectContractType),)
    name: str
    stripe_account_id: str | None = Field(default=None, unique=True)
    country_id: str = Ref()
    logo_url: str | None = None
    billing_address: dict | None = Json()
    contact_email: str | None = None
    payouts_enabled: bool = False
    onboarding_status: str | None = None
    # the Stripe `created` of the newest account.updated applied (an older one is ignored)
    stripe_account_event_at: datetime | None = Time(nullable=True)
    fee_percentage: str = "0.65"
    default_currency: str
    stripe_connect_contract_type: str = E.StripeConnectContractType.PLATFORM
    allow_multiple_subscriptions_per_customer: bool = False
    feature_flags: dict | None = Json()
    external_id: str | None = None
    upfront_processing_credits: int = Money(default=0)
    monthly_billing_volume_free_tier: int = Money(default=100000)


class Membership(Live, table=True):
    __tablename__ = "memberships"
    __table_args__ = (one_of("role", E.MembershipRole),)
    user_id: str = Ref()
    organization_id: str = Ref()
    role: str = E.MembershipRole.MEMBER
    notification_preferences: dict | None = Json()
    deactivated_at: datetime | None = Time(nullable=True)


class Customer(Live, table=True):
    __tablename__ = "customers"
    organization_id: str = Ref()
    email: str
    name: str
    invoice_number_base: str
    invoice_number_next: int = 0  # next invoice's sequence number (allocated atomically)
    archived: bool = False
    stripe_customer_id: str | None = None
    tax_id: str | None = None
    billing_address: dict | None = Json()
    external_id: str
    user_id: str | None = None
    pricing_model_id: str | None = None


class PaymentMethod(Live, table=True):
    __tablename__ = "payment_methods"
    __table_args__ = (one_of("type", E.PaymentMethodType),)
    customer_id: str = Ref()
    billing_details: dict = Json(nullable=False)
    type: str = E.PaymentMethodType.CARD
    default: bool = False
    payment_method_data: dict | None = Json()
    metadata_: dict | None = Field(default=None, sa_column=Column("metadata", JSON))
    stripe_payment_method_id: str | None = None
    external_id: str | None = None


class Product(Live, table=True):
    __tablename__ = "products"
    name: str
    description: str | None = None
    organization_id: str = Ref()
    active: bool = True
    default: bool = False
    slug: str | None = None
    pricing_model_id: str | None = None


class Price(Live, table=True):
    __tablename__ = "prices"
    __table_args__ = (one_of("type", E.PriceType),)
    type: str = E.PriceType.SUBSCRIPTION
    interval_unit: str | None = None
    interval_count: int | None = camel("intervalCount", Integer, nullable=True)
    trial_period_days: int | None = None
    is_default: bool = False
    unit_price: int = Money()
    usage_events_per_unit: int | None = None
    product_id: str | None = Ref(nullable=True)
    usage_meter_id: str | None = None
    active: bool = True
    currency: str
    slug: str | None = None
    name: str | None = None


class Subscription(Live, table=True):
    __tablename__ = "subscriptions"
    __table_args__ = (
        one_of("status", E.SubscriptionStatus),
        Index("ix_subscriptions_cancel_scheduled_at", "cancel_scheduled_at"),
    )
    start_date: datetime = Time()
    customer_id: str = Ref()
    organization_id: str = Ref()
    status: str
    default_payment_method_id: str | None = None
    backup_payment_method_id: str | None = None
    stripe_setup_intent_id: str | None = Field(default=None, unique=True)
    trial_end: datetime | None = Time(nullable=True)
    current_billing_period_start: datetime | None = Time(nullable=True)
    current_billing_period_end: datetime | None = Time(nullable=True)
    metadata_: dict | None = Field(default=None, sa_column=Column("metadata", JSON))
    canceled_at: datetime | None = Time(nullable=True)
    cancel_scheduled_at: datetime | None = Time(nullable=True)
    cancellation_reason: str | None = None
    replaced_by_subscription_id: str | None = None
    is_free_plan: bool = False
    do_not_charge: bool = False
    price_id: str = Ref()
    run_billing_at_period_start: bool = True
    interval: str | None = None
    interval_count: int | None = None
    billing_cycle_anchor_date: datetime | None = Time(nullable=True)
    name: str | None = None
    renews: bool = True
    external_id: str | None = None
    scheduled_adjustment_at: datetime | None = Time(nullable=True)


class SubscriptionItem(Live, table=True):
    __tablename__ = "subscription_items"
    __table_args__ = (one_of("type", E.SubscriptionItemType),)
    subscription_id: str = Ref()
    name: str | None = None
    added_date: datetime = Time()
    price_id: str | None = None
    unit_price: int = Money()
    quantity: int
    metadata_: dict | None = Field(default=None, sa_column=Column("metadata", JSON))
    type: str = E.SubscriptionItemType.STATIC
    external_id: str | None = None
    expired_at: datetime | None = Time(nullable=True)
    manually_created: bool = False


class BillingPeriod(Live, table=True):
    __tablename__ = "billing_periods"
    __table_args__ = (
        one_of("status", E.BillingPeriodStatus),
        Index("ix_billing_periods_end_date", "end_date"),
    )
    subscription_id: str = Ref()
    start_date: datetime = Time()
    end_date: datetime = Time()
    status: str
    trial_period: bool = False
    prorated_period: bool | None = None


class BillingPeriodItem(Live, table=True):
    __tablename__ = "billing_period_items"
    billing_period_id: str = Ref()
    quantity: int
    unit_price: int = Money()
    name: str
    description: str = ""
    discount_redemption_id: str | None = None
    type: str = E.SubscriptionItemType.STATIC


class BillingRun(Live, table=True):
    __tablename__ = "billing_runs"
    __table_args__ = (
        one_of("status", E.BillingRunStatus),
        Index("ix_billing_runs_due", "status", "scheduled_for"),
    )
    billing_period_id: str = Ref()
    scheduled_for: datetime = Time()
    started_at: datetime | None = Time(nullable=True)
    completed_at: datetime | None = Time(nullable=True)
    status: str = E.BillingRunStatus.SCHEDULED
    stripe_payment_intent_id: str | None = None
    attempt_number: int = 1
    error_details: dict | None = Json()
    subscription_id: str = Ref()
    payment_method_id: str
    last_stripe_payment_intent_event_timestamp: datetime | None = Time(nullable=True)
    is_adjustment: bool = False
    claimed_by_run: str | None = None  # the flowjobs run that executes it
    confirm_sent_at: datetime | None = Time(nullable=True)  # Stripe may have charged from here on
    outcome_unknown_since: datetime | None = Time(nullable=True)  # answer lost; reconcile first
    requeues: int = Field(
        default=0, sa_column_kwargs={"server_default": "0"}
    )  # failed jobs, uncharged
    adjustment_params: dict | None = Json()  # an adjustment run's new items (revision 0008)


class Invoice(Live, table=True):
    __tablename__ = "invoices"
    __table_args__ = (one_of("status", E.InvoiceStatus), one_of("type", E.InvoiceType))
    purchase_id: str | None = None
    invoice_number: str = Field(unique=True)
    invoice_date: datetime = Time()
    billing_period_id: str | None = Ref(nullable=True)
    due_date: datetime | None = Time(nullable=True)
    stripe_payment_intent_id: str | None = None
    customer_id: str = Ref()
    organization_id: str = Ref()
    status: str = E.InvoiceStatus.DRAFT
    subscription_id: str | None = None
    billing_run_id: str | None = None
    billing_period_start_date: datetime | None = Time(nullable=True)
    billing_period_end_date: datetime | None = Time(nullable=True)
    owner_membership_id: str | None = None
    pdf_url: str | None = None
    receipt_pdf_url: str | None = None
    memo: str | None = None
    bank_payment_only: bool = False
    type: str = E.InvoiceType.SUBSCRIPTION
    currency: str
    tax_amount: int | None = Money(nullable=True)
    subtotal: int | None = Money(nullable=True)
    stripe_tax_calculation_id: str | None = None
    stripe_tax_transaction_id: str | None = None
    tax_type: str | None = None
    tax_country: str | None = None
    tax_state: str | None = None
    tax_rate_percentage: str | None = None
    application_fee: int | None = Money(nullable=True)


class InvoiceLineItem(Live, table=True):
    __tablename__ = "invoice_line_items"
    invoice_id: str = Ref()
    quantity: int
    price_id: str | None = None
    description: str | None = None
    price: int = Money()
    billing_run_id: str | None = None
    ledger_account_id: str | None = None
    ledger_account_credit: int | None = None
    type: str = E.SubscriptionItemType.STATIC


class Payment(Live, table=True):
    __tablename__ = "payments"
    __table_args__ = (
        one_of("status", E.PaymentStatus),
        Index("ix_payments_pending", "status", "updated_at"),
    )
    invoice_id: str = Ref()
    amount: int = Money()
    payment_method: str
    currency: str
    status: str
    charge_date: datetime = Time()
    settlement_date: datetime | None = Time(nullable=True)
    description: str | None = None
    receipt_number: str | None = None
    receipt_url: str | None = None
    organization_id: str = Ref()
    customer_id: str = Ref()
    purchase_id: str | None = None
    subscription_id: str | None = Ref(nullable=True)
    payment_method_id: str | None = None
    billing_period_id: str | None = Ref(nullable=True)
    billing_run_id: str | None = Ref(nullable=True)
    stripe_payment_intent_id: str | None = Ref(nullable=True)
    stripe_charge_id: str | None = Field(default=None, unique=True)
    subtotal: int | None = Money(nullable=True)
    tax_amount: int | None = Money(nullable=True)
    tax_country: str | None = None
    refunded: bool = False
    refunded_amount: int | None = Money(nullable=True)
    refunded_at: datetime | None = Time(nullable=True)
    failure_message: str | None = None
    failure_code: str | None = None


class Purchase(Live, table=True):
    """A customer's purchase of a price through checkout (spec §2 `purchases`); one-time
    (`single_payment`) purchases are paid by a PaymentIntent (flowjobs.billing.purchases)."""

    __tablename__ = "purchases"
    __table_args__ = (one_of("status", E.PurchaseStatus), one_of("price_type", E.PriceType))
    name: str
    status: str = E.PurchaseStatus.OPEN
    customer_id: str = Ref()
    organization_id: str = Ref()
    price_id: str
    quantity: int = 1
    price_type: str = E.PriceType.SINGLE_PAYMENT
    trial_period_days: int | None = None
    price_per_billing_cycle: int | None = Money(nullable=True)
    interval_unit: str | None = None
    interval_count: int | None = None
    first_invoice_value: int | None = Money(nullable=True)
    total_purchase_value: int | None = Money(nullable=True)
    purchase_date: datetime | None = Time(nullable=True)
    end_date: datetime | None = Time(nullable=True)
    billing_address: dict | None = Json()
    metadata_: dict | None = Field(default=None, sa_column=Column("metadata", JSON))


class FeeCalculation(Live, table=True):
    __tablename__ = "fee_calculations"
    organization_id: str = Ref()
    billing_period_id: str | None = Ref(nullable=True)
    checkout_session_id: str | None = Ref(nullable=True)
    purchase_id: str | None = None
    billing_run_id: str | None = None
    payment_method_type: str
    base_amount: int = Money()
    discount_amount_fixed: int = Money(default=0)
    pretax_total: int = camel("pretaxTotal", BigInteger)
    tax_amount_fixed: int = camel("taxAmountFixed", BigInteger)
    flowglad_fee_percentage: str
    mor_surcharge_percentage: str
    international_fee_percentage: str
    payment_method_fee_fixed: int = Money(default=0)
    application_fee: int = Money(default=0)
    stripe_tax_calculation_id: str | None = camel("stripeTaxCalculationId", String, nullable=True)
    stripe_tax_transaction_id: str | None = camel("stripeTaxTransactionId", String, nullable=True)
    currency: str
    type: str = E.FeeCalculationType.SUBSCRIPTION_PAYMENT
    billing_address: dict | None = Json()
    internal_notes: str | None = camel("internalNotes", Text, nullable=True)


class DiscountRedemption(Live, table=True):
    __tablename__ = "discount_redemptions"
    __table_args__ = (
        one_of("discount_amount_type", E.DiscountAmountType),
        one_of("duration", E.DiscountDuration),
    )
    discount_id: str
    purchase_id: str | None = None
    subscription_id: str | None = Ref(nullable=True)
    discount_name: str
    discount_code: str
    discount_amount: int = Money()
    discount_amount_type: str
    duration: str
    number_of_payments: int | None = None
    fully_redeemed: bool = False


class Event(Live, table=True):
    __tablename__ = "events"
    type: str
    payload: dict = Json(nullable=False)
    occurred_at: datetime = Time()
    submitted_at: datetime = Time()
    processed_at: datetime | None = Time(nullable=True)
    metadata_: dict | None = Field(default=None, sa_column=Column("metadata", JSON))
    object_entity: str | None = None
    object_id: str | None = None
    hash: str = Field(unique=True)
    organization_id: str = Ref()


class CheckoutSession(Live, table=True):
    __tablename__ = "checkout_sessions"
    __table_args__ = (
        one_of("status", E.CheckoutSessionStatus),
        one_of("type", E.CheckoutSessionType),
        Index("ix_checkout_sessions_created_at", "created_at"),
    )
    status: str = E.CheckoutSessionStatus.OPEN
    type: str = E.CheckoutSessionType.PRODUCT
    organization_id: str = Ref()
    customer_id: str | None = None
    price_id: str | None = None
    quantity: int = 1
    target_subscription_id: str | None = None
    stripe_setup_intent_id: str | None = None
    stripe_payment_intent_id: str | None = None
    customer_email: str | None = None
    customer_name: str | None = None
    expires: datetime | None = Time(nullable=True)
    purchase_id: str | None = Ref(nullable=True)  # revision 0010: the purchase it pays
    discount_redemption_id: str | None = None  # revision 0010: the discount it applies
