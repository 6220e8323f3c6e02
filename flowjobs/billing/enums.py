"""Flowglad's enums with their exact stored values (domain spec §3).

Note `BillingRunStatus.IN_PROGRESS` is stored as "started", as upstream.
"""

from enum import StrEnum


class SubscriptionStatus(StrEnum):
    TRIALING = "trialing"
    CREDIT_TRIAL = "credit_trial"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    CANCELLATION_SCHEDULED = "cancellation_scheduled"
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    CANCELED = "canceled"
    PAUSED = "paused"


SUBSCRIPTION_TERMINAL = {SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED}


class BillingPeriodStatus(StrEnum):
    UPCOMING = "upcoming"
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELED = "canceled"
    PAST_DUE = "past_due"
    SCHEDULED_TO_CANCEL = "scheduled_to_cancel"


PERIOD_TERMINAL = {BillingPeriodStatus.COMPLETED, BillingPeriodStatus.CANCELED}


class BillingRunStatus(StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "started"
    AWAITING_PAYMENT_CONFIRMATION = "awaiting_payment_confirmation"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABANDONED = "abandoned"
    ABORTED = "aborted"


RUN_FINAL = {
    BillingRunStatus.SUCCEEDED,
    BillingRunStatus.FAILED,
    BillingRunStatus.ABORTED,
    BillingRunStatus.ABANDONED,
}


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOID = "void"
    FULLY_REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    AWAITING_PAYMENT_CONFIRMATION = "awaiting_payment_confirmation"


INVOICE_REFUNDED = {InvoiceStatus.PARTIALLY_REFUNDED, InvoiceStatus.FULLY_REFUNDED}

INVOICE_TERMINAL = {
    InvoiceStatus.PAID,
    InvoiceStatus.UNCOLLECTIBLE,
    InvoiceStatus.VOID,
    InvoiceStatus.FULLY_REFUNDED,
}


class PaymentStatus(StrEnum):
    CANCELED = "canceled"
    FAILED = "failed"
    REFUNDED = "refunded"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"


PAYMENT_TERMINAL = {
    PaymentStatus.SUCCEEDED,
    PaymentStatus.REFUNDED,
    PaymentStatus.CANCELED,
    PaymentStatus.FAILED,
}
PAYMENT_SETTLED = {PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED}
PAYMENT_PENDING = {
    PaymentStatus.PROCESSING,
    PaymentStatus.REQUIRES_CONFIRMATION,
    PaymentStatus.REQUIRES_ACTION,
}


class PurchaseStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"
    FAILED = "failed"
    PAID = "paid"
    REFUNDED = "refunded"
    PARTIAL_REFUND = "partial_refund"
    FRAUDULENT = "fraudulent"


class IntentMetadataType(StrEnum):
    """Stripe PaymentIntent metadata `type` (with `billingRunId` or `checkoutSessionId`)."""

    CHECKOUT_SESSION = "checkout_session"
    BILLING_RUN = "billing_run"


class InvoiceType(StrEnum):
    SUBSCRIPTION = "subscription"
    PURCHASE = "purchase"
    STANDALONE = "standalone"


class PriceType(StrEnum):
    SINGLE_PAYMENT = "single_payment"
    SUBSCRIPTION = "subscription"
    USAGE = "usage"


class IntervalUnit(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class SubscriptionItemType(StrEnum):
    USAGE = "usage"
    STATIC = "static"


class PaymentMethodType(StrEnum):
    CARD = "card"
    LINK = "link"
    US_BANK_ACCOUNT = "us_bank_account"
    SEPA_DEBIT = "sepa_debit"


class BusinessOnboardingStatus(StrEnum):
    FULLY_ONBOARDED = "fully_onboarded"
    PARTIALLY_ONBOARDED = "partially_onboarded"
    UNAUTHORIZED = "unauthorized"
    EXPIRED = "expired"


class StripeConnectContractType(StrEnum):
    PLATFORM = "platform"
    MERCHANT_OF_RECORD = "merchant_of_record"


class FlowgladEventType(StrEnum):
    CUSTOMER_CREATED = "customer.created"
    CUSTOMER_UPDATED = "customer.updated"
    PURCHASE_COMPLETED = "purchase.completed"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    SUBSCRIPTION_CREATED = "subscription.created"
    SUBSCRIPTION_UPDATED = "subscription.updated"
    SUBSCRIPTION_CANCELED = "subscription.canceled"
    SYNC_EVENTS_AVAILABLE = "sync.events_available"


class EventNoun(StrEnum):
    CUSTOMER = "customer"
    USER = "user"
    PURCHASE = "purchase"
    INVOICE = "invoice"
    PAYMENT = "payment"
    PRODUCT = "product"
    SUBSCRIPTION = "subscription"
    SYNC_STREAM = "sync_stream"


class DiscountAmountType(StrEnum):
    PERCENT = "percent"
    FIXED = "fixed"


class DiscountDuration(StrEnum):
    ONCE = "once"
    FOREVER = "forever"
    NUMBER_OF_PAYMENTS = "number_of_payments"


class CheckoutSessionStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


class CheckoutSessionType(StrEnum):
    PRODUCT = "product"
    PURCHASE = "purchase"
    ADD_PAYMENT_METHOD = "add_payment_method"
    ACTIVATE_SUBSCRIPTION = "activate_subscription"


class FeeCalculationType(StrEnum):
    SUBSCRIPTION_PAYMENT = "subscription_payment"
    CHECKOUT_SESSION_PAYMENT = "checkout_session_payment"


class MembershipRole(StrEnum):
    OWNER = "owner"
    MEMBER = "member"


class CancellationReason(StrEnum):
    UPGRADED_TO_PAID = "upgraded_to_paid"
    CUSTOMER_REQUEST = "customer_request"
    NON_PAYMENT = "non_payment"
    PRICING_MODEL_MIGRATION = "pricing_model_migration"
    OTHER = "other"
