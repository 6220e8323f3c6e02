"""The Flowglad billing tables (spec §2) as SQLModel classes, on the jobs' database.

Conventions: ids `<prefix>_<21 chars>` (flowjobs.ids), money as BIGINT minor units next to an
upper-case `currency`, times as aware UTC datetimes (`UTCDateTime`), enum columns as text
holding the exact values of flowjobs.billing.enums (CHECK constraints keep them honest).
Only the columns the jobs read or write are modelled. Columns upstream names in camelCase
keep their names (`intervalCount`, `pretaxTotal`, …).

Deliberate additions (docs/billing.md): `customers.invoice_number_next` (race-free invoice
numbers), `billing_runs.claimed_by_run` (which job run executes it), `payments.billing_run_id`.
The schema itself is created by the migrations in flowjobs/store/migrations; a test checks that
the migrated schema matches these classes.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from flowjobs.billing import enums as E
from flowjobs.billing.types import UTCDateTime

metadata = SQLModel.metadata


def Time(nullable: bool = False, **kw) -> Any:
    return Field(default=None if nullable else ..., sa_type=UTCDateTime, nullable=nullable, **kw)


def Money(nullable: bool = False, default: Any = ..., **kw) -> Any:
    return Field(default=None if nullable else default, sa_type=BigInteger, nullable=nullable, **kw)


def Json(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=JSON, nullable=nullable)


def Ref(nullable: bool = False, **kw) -> Any:
    return Field(default=None if nullable else ..., sa_type=String, nullable=nullable, index=True, **kw)


def one_of(column: str, enum: type[StrEnum]) -> CheckConstraint:
    values = ", ".join(f"'{member.value}'" for member in enum)
    return CheckConstraint(f"{column} IN ({values})", name=f"ck_{column}")


def camel(name: str, sa_type, nullable: bool = False, default: Any = ...) -> Any:
    return Field(default=None if nullable and default is ... else default,
                 sa_column=Column(name, sa_type, nullable=nullable))


class Base(SQLModel):
    id: str = Field(primary_key=True, sa_type=String)
    created_at: datetime = Field(default=None, sa_type=UTCDateTime, nullable=False)  # set on flush
    updated_at: datetime = Field(default=None, sa_type=UTCDateTime, nullable=False)  # bumped on flush


class Live(Base):
    livemode: bool = False


class Country(Base, table=True):
    __tablename__ = "countries"
    name: str
    code: str = Field(unique=True)


class User(Base, table=True):
    __tablename__ = "users"
    email: Optional[str] = None
    name: Optional[str] = None


class Organization(Base, table=True):
    __tablename__ = "organizations"
    __table_args__ = (one_of("stripe_connect_contract_type", E.StripeConnectContractType),)
    name: str
    stripe_account_id: Optional[str] = Field(default=None, unique=True)
    country_id: str = Ref()
    logo_url: Optional[str] = None
    billing_address: Optional[dict] = Json()
    contact_email: Optional[str] = None
    payouts_enabled: bool = False
    onboarding_status: Optional[str] = None
    fee_percentage: str = "0.65"
    default_currency: str
    stripe_connect_contract_type: str = E.StripeConnectContractType.PLATFORM
    allow_multiple_subscriptions_per_customer: bool = False
    feature_flags: Optional[dict] = Json()
    external_id: Optional[str] = None
    upfront_processing_credits: int = Money(default=0)
    monthly_billing_volume_free_tier: int = Money(default=100000)


class Membership(Live, table=True):
    __tablename__ = "memberships"
    __table_args__ = (one_of("role", E.MembershipRole),)
    user_id: str = Ref()
    organization_id: str = Ref()
    role: str = E.MembershipRole.MEMBER
    notification_preferences: Optional[dict] = Json()
    deactivated_at: Optional[datetime] = Time(nullable=True)


class Customer(Live, table=True):
    __tablename__ = "customers"
    organization_id: str = Ref()
    email: str
    name: str
    invoice_number_base: str
    invoice_number_next: int = 0  # next invoice's sequence number (allocated atomically)
    archived: bool = False
    stripe_customer_id: Optional[str] = None
    tax_id: Optional[str] = None
    billing_address: Optional[dict] = Json()
    external_id: str
    user_id: Optional[str] = None
    pricing_model_id: Optional[str] = None


class PaymentMethod(Live, table=True):
    __tablename__ = "payment_methods"
    __table_args__ = (one_of("type", E.PaymentMethodType),)
    customer_id: str = Ref()
    billing_details: dict = Json(nullable=False)
    type: str = E.PaymentMethodType.CARD
    default: bool = False
    payment_method_data: Optional[dict] = Json()
    metadata_: Optional[dict] = Field(default=None, sa_column=Column("metadata", JSON))
    stripe_payment_method_id: Optional[str] = None
    external_id: Optional[str] = None


class Product(Live, table=True):
    __tablename__ = "products"
    name: str
    description: Optional[str] = None
    organization_id: str = Ref()
    active: bool = True
    default: bool = False
    slug: Optional[str] = None
    pricing_model_id: Optional[str] = None


class Price(Live, table=True):
    __tablename__ = "prices"
    __table_args__ = (one_of("type", E.PriceType),)
    type: str = E.PriceType.SUBSCRIPTION
    interval_unit: Optional[str] = None
    interval_count: Optional[int] = camel("intervalCount", Integer, nullable=True)
    trial_period_days: Optional[int] = None
    is_default: bool = False
    unit_price: int = Money()
    usage_events_per_unit: Optional[int] = None
    product_id: Optional[str] = Ref(nullable=True)
    usage_meter_id: Optional[str] = None
    active: bool = True
    currency: str
    slug: Optional[str] = None
    name: Optional[str] = None


class Subscription(Live, table=True):
    __tablename__ = "subscriptions"
    __table_args__ = (one_of("status", E.SubscriptionStatus),
                      Index("ix_subscriptions_cancel_scheduled_at", "cancel_scheduled_at"))
    start_date: datetime = Time()
    customer_id: str = Ref()
    organization_id: str = Ref()
    status: str
    default_payment_method_id: Optional[str] = None
    backup_payment_method_id: Optional[str] = None
    stripe_setup_intent_id: Optional[str] = Field(default=None, unique=True)
    trial_end: Optional[datetime] = Time(nullable=True)
    current_billing_period_start: Optional[datetime] = Time(nullable=True)
    current_billing_period_end: Optional[datetime] = Time(nullable=True)
    metadata_: Optional[dict] = Field(default=None, sa_column=Column("metadata", JSON))
    canceled_at: Optional[datetime] = Time(nullable=True)
    cancel_scheduled_at: Optional[datetime] = Time(nullable=True)
    cancellation_reason: Optional[str] = None
    replaced_by_subscription_id: Optional[str] = None
    is_free_plan: bool = False
    do_not_charge: bool = False
    price_id: str = Ref()
    run_billing_at_period_start: bool = True
    interval: Optional[str] = None
    interval_count: Optional[int] = None
    billing_cycle_anchor_date: Optional[datetime] = Time(nullable=True)
    name: Optional[str] = None
    renews: bool = True
    external_id: Optional[str] = None
    scheduled_adjustment_at: Optional[datetime] = Time(nullable=True)


class SubscriptionItem(Live, table=True):
    __tablename__ = "subscription_items"
    __table_args__ = (one_of("type", E.SubscriptionItemType),)
    subscription_id: str = Ref()
    name: Optional[str] = None
    added_date: datetime = Time()
    price_id: Optional[str] = None
    unit_price: int = Money()
    quantity: int
    metadata_: Optional[dict] = Field(default=None, sa_column=Column("metadata", JSON))
    type: str = E.SubscriptionItemType.STATIC
    external_id: Optional[str] = None
    expired_at: Optional[datetime] = Time(nullable=True)
    manually_created: bool = False


class BillingPeriod(Live, table=True):
    __tablename__ = "billing_periods"
    __table_args__ = (one_of("status", E.BillingPeriodStatus),
                      Index("ix_billing_periods_end_date", "end_date"))
    subscription_id: str = Ref()
    start_date: datetime = Time()
    end_date: datetime = Time()
    status: str
    trial_period: bool = False
    prorated_period: Optional[bool] = None


class BillingPeriodItem(Live, table=True):
    __tablename__ = "billing_period_items"
    billing_period_id: str = Ref()
    quantity: int
    unit_price: int = Money()
    name: str
    description: str = ""
    discount_redemption_id: Optional[str] = None
    type: str = E.SubscriptionItemType.STATIC


class BillingRun(Live, table=True):
    __tablename__ = "billing_runs"
    __table_args__ = (one_of("status", E.BillingRunStatus),
                      Index("ix_billing_runs_due", "status", "scheduled_for"))
    billing_period_id: str = Ref()
    scheduled_for: datetime = Time()
    started_at: Optional[datetime] = Time(nullable=True)
    completed_at: Optional[datetime] = Time(nullable=True)
    status: str = E.BillingRunStatus.SCHEDULED
    stripe_payment_intent_id: Optional[str] = None
    attempt_number: int = 1
    error_details: Optional[dict] = Json()
    subscription_id: str = Ref()
    payment_method_id: str
    last_stripe_payment_intent_event_timestamp: Optional[datetime] = Time(nullable=True)
    is_adjustment: bool = False
    claimed_by_run: Optional[str] = None  # the flowjobs run that executes it
    confirm_sent_at: Optional[datetime] = Time(nullable=True)  # Stripe may have charged from here on
    outcome_unknown_since: Optional[datetime] = Time(nullable=True)  # answer lost; reconcile first
    requeues: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # failed jobs, uncharged
    adjustment_params: Optional[dict] = Json()  # an adjustment run's new items (revision 0008)


class Invoice(Live, table=True):
    __tablename__ = "invoices"
    __table_args__ = (one_of("status", E.InvoiceStatus), one_of("type", E.InvoiceType))
    purchase_id: Optional[str] = None
    invoice_number: str = Field(unique=True)
    invoice_date: datetime = Time()
    billing_period_id: Optional[str] = Ref(nullable=True)
    due_date: Optional[datetime] = Time(nullable=True)
    stripe_payment_intent_id: Optional[str] = None
    customer_id: str = Ref()
    organization_id: str = Ref()
    status: str = E.InvoiceStatus.DRAFT
    subscription_id: Optional[str] = None
    billing_run_id: Optional[str] = None
    billing_period_start_date: Optional[datetime] = Time(nullable=True)
    billing_period_end_date: Optional[datetime] = Time(nullable=True)
    owner_membership_id: Optional[str] = None
    pdf_url: Optional[str] = None
    receipt_pdf_url: Optional[str] = None
    memo: Optional[str] = None
    bank_payment_only: bool = False
    type: str = E.InvoiceType.SUBSCRIPTION
    currency: str
    tax_amount: Optional[int] = Money(nullable=True)
    subtotal: Optional[int] = Money(nullable=True)
    stripe_tax_calculation_id: Optional[str] = None
    stripe_tax_transaction_id: Optional[str] = None
    tax_type: Optional[str] = None
    tax_country: Optional[str] = None
    tax_state: Optional[str] = None
    tax_rate_percentage: Optional[str] = None
    application_fee: Optional[int] = Money(nullable=True)


class InvoiceLineItem(Live, table=True):
    __tablename__ = "invoice_line_items"
    invoice_id: str = Ref()
    quantity: int
    price_id: Optional[str] = None
    description: Optional[str] = None
    price: int = Money()
    billing_run_id: Optional[str] = None
    ledger_account_id: Optional[str] = None
    ledger_account_credit: Optional[int] = None
    type: str = E.SubscriptionItemType.STATIC


class Payment(Live, table=True):
    __tablename__ = "payments"
    __table_args__ = (one_of("status", E.PaymentStatus),
                      Index("ix_payments_pending", "status", "updated_at"))
    invoice_id: str = Ref()
    amount: int = Money()
    payment_method: str
    currency: str
    status: str
    charge_date: datetime = Time()
    settlement_date: Optional[datetime] = Time(nullable=True)
    description: Optional[str] = None
    receipt_number: Optional[str] = None
    receipt_url: Optional[str] = None
    organization_id: str = Ref()
    customer_id: str = Ref()
    purchase_id: Optional[str] = None
    subscription_id: Optional[str] = Ref(nullable=True)
    payment_method_id: Optional[str] = None
    billing_period_id: Optional[str] = Ref(nullable=True)
    billing_run_id: Optional[str] = Ref(nullable=True)
    stripe_payment_intent_id: Optional[str] = Ref(nullable=True)
    stripe_charge_id: Optional[str] = Field(default=None, unique=True)
    subtotal: Optional[int] = Money(nullable=True)
    tax_amount: Optional[int] = Money(nullable=True)
    tax_country: Optional[str] = None
    refunded: bool = False
    refunded_amount: Optional[int] = Money(nullable=True)
    refunded_at: Optional[datetime] = Time(nullable=True)
    failure_message: Optional[str] = None
    failure_code: Optional[str] = None


class FeeCalculation(Live, table=True):
    __tablename__ = "fee_calculations"
    organization_id: str = Ref()
    billing_period_id: Optional[str] = Ref(nullable=True)
    checkout_session_id: Optional[str] = Ref(nullable=True)
    purchase_id: Optional[str] = None
    billing_run_id: Optional[str] = None
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
    stripe_tax_calculation_id: Optional[str] = camel("stripeTaxCalculationId", String, nullable=True)
    stripe_tax_transaction_id: Optional[str] = camel("stripeTaxTransactionId", String, nullable=True)
    currency: str
    type: str = E.FeeCalculationType.SUBSCRIPTION_PAYMENT
    billing_address: Optional[dict] = Json()
    internal_notes: Optional[str] = camel("internalNotes", Text, nullable=True)


class DiscountRedemption(Live, table=True):
    __tablename__ = "discount_redemptions"
    __table_args__ = (one_of("discount_amount_type", E.DiscountAmountType),
                      one_of("duration", E.DiscountDuration))
    discount_id: str
    purchase_id: Optional[str] = None
    subscription_id: Optional[str] = Ref(nullable=True)
    discount_name: str
    discount_code: str
    discount_amount: int = Money()
    discount_amount_type: str
    duration: str
    number_of_payments: Optional[int] = None
    fully_redeemed: bool = False


class Event(Live, table=True):
    __tablename__ = "events"
    type: str
    payload: dict = Json(nullable=False)
    occurred_at: datetime = Time()
    submitted_at: datetime = Time()
    processed_at: Optional[datetime] = Time(nullable=True)
    metadata_: Optional[dict] = Field(default=None, sa_column=Column("metadata", JSON))
    object_entity: Optional[str] = None
    object_id: Optional[str] = None
    hash: str = Field(unique=True)
    organization_id: str = Ref()


class CheckoutSession(Live, table=True):
    __tablename__ = "checkout_sessions"
    __table_args__ = (one_of("status", E.CheckoutSessionStatus), one_of("type", E.CheckoutSessionType),
                      Index("ix_checkout_sessions_created_at", "created_at"))
    status: str = E.CheckoutSessionStatus.OPEN
    type: str = E.CheckoutSessionType.PRODUCT
    organization_id: str = Ref()
    customer_id: Optional[str] = None
    price_id: Optional[str] = None
    quantity: int = 1
    target_subscription_id: Optional[str] = None
    stripe_setup_intent_id: Optional[str] = None
    stripe_payment_intent_id: Optional[str] = None
    customer_email: Optional[str] = None
    customer_name: Optional[str] = None
    expires: Optional[datetime] = Time(nullable=True)
