"""What each of the sixteen notifications says and to whom (spec §10).

Each composer reads what it needs inside the caller's transaction and returns the emails to
send (none when there is nobody to tell). Line items and totals come from
flowjobs.billing.totals.invoice_totals — the function the billing run charges with and the
PDFs are drawn from — so an email, its PDF and the charge always agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formataddr
from typing import TYPE_CHECKING, TypeVar

from sqlmodel import col, select

from flowjobs.adapters.mailer import one_line
from flowjobs.billing import enums as E
from flowjobs.billing.models import (
    Customer,
    Invoice,
    Membership,
    Organization,
    Payment,
    PaymentMethod,
    Price,
    Subscription,
    SubscriptionItem,
    User,
)
from flowjobs.billing.money import format_money
from flowjobs.billing.totals import Totals, invoice_totals
from flowjobs.billing.types import ms_from_utc
from flowjobs.documents.data import check_receipt, method_summary
from flowjobs.documents.document import day
from flowjobs.errors import NotFound
from flowjobs.notifications.render import Email, Message, MessageLine

if TYPE_CHECKING:
    from sqlmodel import Session

    from flowjobs.config import MailSettings


_Row = TypeVar("_Row")


class Skip(Exception):
    """Nothing to send, for a reason worth recording (e.g. the customer has no email)."""


@dataclass
class Ctx:
    s: Session
    mail: MailSettings
    attachments: dict[str, list[tuple[str, bytes]]]  # prepared PDFs by payment id
    org_name: str | None = None  # set by the sender helpers; signs every email's footer


def _get(s: Session, model: type[_Row], row_id: str | None, what: str) -> _Row:
    row = s.get(model, row_id or "")
    if row is None:
        raise NotFound(f"{what} {row_id} does not exist")
    return row


_LETTERS = str.maketrans(
    {"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "œ": "oe"}
)


def kebab(name: str) -> str:
    """An email local part from a name: `Łódź Analytics` → `lodz-analytics`."""
    import unicodedata

    ascii_ = (
        unicodedata.normalize("NFKD", name.translate(_LETTERS)).encode("ascii", "ignore").decode()
    )
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-") or "billing"


def subject(text: str, livemode: bool) -> str:
    return text if livemode else f"[TEST] {text}"


def customer_sender(c: Ctx, org: Organization) -> str:
    c.org_name = org.name
    # quoted as the name needs ("Acme, Inc." held a comma that split the From header in two)
    return formataddr(
        (one_line(f"{org.name} Billing"), f"{kebab(org.name)}-billing@{c.mail.billing_domain}")
    )


def org_sender(c: Ctx) -> str:
    return f"Flowglad <{c.mail.from_address}>"


def portal(c: Ctx, org: Organization, customer: Customer) -> str:
    return f"{c.mail.app_url}/billing-portal/{org.id}/{customer.id}"


def members(s, org_id: str, preference: str | None, livemode: bool) -> list[str]:
    """Emails of the organisation's active members who want this notification."""
    rows = s.exec(
        select(Membership, User)
        .where(
            Membership.organization_id == org_id,
            Membership.user_id == User.id,
            Membership.deactivated_at == None,
        )
        .order_by(col(Membership.created_at), col(Membership.id))
    )
    emails: list[str] = []
    owners: list[str] = []
    for membership, user in rows:
        prefs = membership.notification_preferences or {}
        if not user.email or (preference and prefs.get(preference, True) is False):
            continue
        if not livemode and prefs.get("testModeNotifications", True) is False:
            continue
        (owners if membership.role == E.MembershipRole.OWNER else emails).append(user.email)
    return owners + emails  # owners first: the first is the reply-to of customer receipts


def _customer_email(customer: Customer) -> list[str]:
    if not (customer.email or "").strip():
        raise Skip(f"customer {customer.id} has no email address")
    return [customer.email]


def _invoice_block(s, invoice: Invoice, message: Message) -> Totals:
    """The invoice's lines (with their billing period) and totals, as charged and as on its PDF."""
    totals = invoice_totals(s, invoice)
    money = lambda v: format_money(v, totals.currency)  # noqa: E731
    message.lines = [
        MessageLine(
            line.description,
            line.quantity,
            money(line.unit_price),
            money(line.amount),
            f"{day(line.period_start)} – {day(line.period_end)}"
            if line.period_start and line.period_end
            else "",
        )
        for line in totals.lines
    ]
    if totals.discount:
        label = f"Discount ({totals.discount_code})" if totals.discount_code else "Discount"
        message.totals += [
            ("Original amount", money(totals.base)),
            (label, money(-totals.discount)),
        ]
    message.totals.append(("Subtotal", money(totals.subtotal)))
    if totals.tax:
        message.totals.append(("Tax", money(totals.tax)))
    message.totals.append(("Total", money(totals.total)))
    if totals.paid:
        message.totals.append(("Amount paid", money(totals.paid)))
    if totals.refunded:
        message.totals.append(("Refunded", money(-totals.refunded)))
    message.totals.append(("Amount due", money(totals.due)))
    return totals


def _plan(s, sub: Subscription) -> tuple[str, str]:
    price = s.get(Price, sub.price_id)
    items = s.exec(select(SubscriptionItem).where(SubscriptionItem.subscription_id == sub.id)).all()
    amount = sum(i.unit_price * i.quantity for i in items if i.expired_at is None) or (
        price.unit_price if price else 0
    )
    interval = (
        f"{sub.interval_count} {sub.interval}s"
        if (sub.interval_count or 1) > 1
        else (sub.interval or "")
    )
    return sub.name or (
        price.name if price else "subscription"
    ), f"{format_money(amount, price.currency)} / {interval}"


def _method_text(s, sub: Subscription) -> str:
    """ "Visa ending 4242" from the card Stripe reported; "none" without a payment method."""
    method = s.get(PaymentMethod, sub.default_payment_method_id or "")
    if method is None:
        return "none"
    last4 = (method.payment_method_data or {}).get("last4")
    name = method_summary(method.type, method).split(" •••• ")[0]
    return f"{name} ending {last4}" if last4 else name


def _ms(value: int | None) -> str | None:
    return day(datetime.fromtimestamp(value / 1000, tz=UTC)) if value else None


# -- customer emails -----------------------------------------------------------------------
def customer_payment_succeeded(c: Ctx, p) -> list[Email]:
    payment = _get(c.s, Payment, p.payment_id, "payment")
    check_receipt(payment)  # "Your Order is Confirmed" only for a payment that took the money
    invoice = _get(c.s, Invoice, payment.invoice_id, "invoice")
    if not invoice.livemode:
        raise Skip("receipts are sent for live-mode invoices only")
    org, customer = (
        _get(c.s, Organization, payment.organization_id, "organization"),
        _get(c.s, Customer, payment.customer_id, "customer"),
    )
    mor = org.stripe_connect_contract_type == E.StripeConnectContractType.MERCHANT_OF_RECORD
    title = (
        f"Order Receipt #{invoice.invoice_number} from Flowglad for {org.name}"
        if mor
        else f"{org.name} Order Receipt: #{invoice.invoice_number}"
    )
    message = Message(
        "Your Order is Confirmed",
        [f"Thank you for your payment to {org.name}."],
        [
            ("Invoice #", invoice.invoice_number),
            ("Date", day(payment.charge_date)),
            ("Payment total", format_money(payment.amount, payment.currency)),
        ],
        action=("View Order", portal(c, org, customer)),
    )
    _invoice_block(c.s, invoice, message)
    reply = members(c.s, org.id, None, True)
    return [
        Email(
            "send-customer-payment-succeeded-notification",
            _customer_email(customer),
            subject(title, payment.livemode),
            message,
            customer_sender(c, org),
            reply[0] if reply else None,
            c.attachments.get(payment.id, []),
        )
    ]


def customer_payment_failed(c: Ctx, p) -> list[Email]:
    payment = _get(c.s, Payment, p.payment_id, "payment")
    invoice = _get(c.s, Invoice, payment.invoice_id, "invoice")
    org, customer = (
        _get(c.s, Organization, payment.organization_id, "organization"),
        _get(c.s, Customer, payment.customer_id, "customer"),
    )
    reason = payment.failure_message or payment.failure_code or "The payment was declined."
    retry = (
        f"We will try again on {_ms(p.retry_date)}."
        if p.retry_date
        else "We will not retry this payment automatically."
    )
    message = Message(
        "Payment Unsuccessful",
        [f"Your payment to {org.name} failed: {reason}", retry],
        [
            ("Invoice #", invoice.invoice_number),
            ("Date", day(payment.charge_date)),
            ("Amount", format_money(payment.amount, payment.currency)),
        ],
        action=("Update Payment Method", portal(c, org, customer)),
    )
    _invoice_block(c.s, invoice, message)
    return [
        Email(
            "send-customer-payment-failed-notification",
            _customer_email(customer),
            subject("Your Payment Failed", payment.livemode),
            message,
            customer_sender(c, org),
        )
    ]


def _sub_context(c: Ctx, subscription_id: str | None):
    sub = _get(c.s, Subscription, subscription_id, "subscription")
    return (
        sub,
        _get(c.s, Organization, sub.organization_id, "organization"),
        _get(c.s, Customer, sub.customer_id, "customer"),
    )


def customer_subscription_created(c: Ctx, p) -> list[Email]:
    sub, org, customer = _sub_context(c, p.subscription_id)
    name, price = _plan(c.s, sub)
    nxt = sub.trial_end or sub.current_billing_period_end
    facts = [
        ("Plan", name),
        ("Price", price),
        ("Next billing date", day(nxt) if nxt else "—"),
        ("Payment method", _method_text(c.s, sub)),
        ("Confirmed on", day(sub.created_at)),
    ]
    if sub.trial_end:
        facts.append(("Trial ends", day(sub.trial_end)))
    if sub.do_not_charge:
        facts.append(("Billing", "you will not be charged for this subscription"))
    message = Message(
        "Your Subscription is Confirmed",
        [f"You are subscribed to {name} with {org.name}."],
        facts,
        action=("Manage subscription", portal(c, org, customer)),
    )
    return [
        Email(
            "send-customer-subscription-created-notification",
            _customer_email(customer),
            subject("Your Subscription is Confirmed", sub.livemode),
            message,
            customer_sender(c, org),
        )
    ]


def customer_subscription_upgraded(c: Ctx, p) -> list[Email]:
    sub, org, customer = _sub_context(c, p.new_subscription_id)
    previous = _get(c.s, Subscription, p.previous_subscription_id, "subscription")
    (new_name, new_price), (old_name, old_price) = _plan(c.s, sub), _plan(c.s, previous)
    message = Message(
        "Your Subscription is Confirmed",
        [f"You moved from {old_name} to {new_name}."],
        [
            ("Previous plan", f"{old_name} ({old_price})"),
            ("New plan", f"{new_name} ({new_price})"),
            (
                "Next billing date",
                day(sub.current_billing_period_end) if sub.current_billing_period_end else "—",
            ),
            ("Trialing", "yes" if sub.status == E.SubscriptionStatus.TRIALING else "no"),
        ],
        action=("Manage subscription", portal(c, org, customer)),
    )
    return [
        Email(
            "send-customer-subscription-upgraded-notification",
            _customer_email(customer),
            subject("Your Subscription is Confirmed", sub.livemode),
            message,
            customer_sender(c, org),
        )
    ]


def _items(items, currency) -> list[MessageLine]:
    return [
        MessageLine(
            i.get("name", ""),
            int(i.get("quantity", 1)),
            format_money(int(i.get("unitPrice", 0)), currency),
            format_money(int(i.get("unitPrice", 0)) * int(i.get("quantity", 1)), currency),
        )
        for i in items or []
    ]


def _adjusted_message(c: Ctx, p, sub, org) -> Message:
    currency = (p.model_extra or {}).get("currency") or org.default_currency
    extra = p.model_extra or {}
    proration = extra.get("prorationAmount")
    message = Message(
        "Your Subscription has been Updated",
        [f"Your {sub.name or 'subscription'} changed ({extra.get('adjustmentType', 'update')})."],
        [
            ("Effective", _ms(extra.get("effectiveDate")) or "now"),
            (
                "Proration",
                format_money(int(proration), currency) if proration is not None else "none",
            ),
            (
                "Next billing date",
                day(sub.current_billing_period_end) if sub.current_billing_period_end else "—",
            ),
        ],
    )
    message.lines = _items(extra.get("previousItems"), currency) + _items(
        extra.get("newItems"), currency
    )
    return message


def customer_subscription_adjusted(c: Ctx, p) -> list[Email]:
    sub, org, customer = _sub_context(c, (p.model_extra or {}).get("subscriptionId"))
    return [
        Email(
            "send-customer-subscription-adjusted-notification",
            _customer_email(customer),
            subject("Your Subscription has been Updated", sub.livemode),
            _adjusted_message(c, p, sub, org),
            customer_sender(c, org),
        )
    ]


def customer_subscription_canceled(c: Ctx, p) -> list[Email]:
    sub, org, customer = _sub_context(c, p.subscription_id)
    if not (sub.canceled_at or sub.cancel_scheduled_at):
        raise Skip(f"subscription {sub.id} has no cancellation date")
    name = sub.name or "subscription"
    message = Message(
        "Subscription Canceled",
        [f"Your {name} subscription with {org.name} has been canceled."],
        [("Cancellation date", day(sub.canceled_at or sub.cancel_scheduled_at))],
    )
    return [
        Email(
            "send-customer-subscription-canceled-notification",
            _customer_email(customer),
            subject(
                f"Subscription Canceled: Your {name} subscription has been canceled", sub.livemode
            ),
            message,
            customer_sender(c, org),
        )
    ]


def _still_scheduled(sub: Subscription, date_ms: int | None) -> None:
    """Skip a cancellation-scheduled email whose premise no longer holds when it runs: the
    subscription is not `cancellation_scheduled` any more (un-canceled, or already canceled),
    or is scheduled to cancel on another date than the one the email would announce (un-canceled
    and scheduled again: the new schedule's own email tells that date)."""
    if sub.status == E.SubscriptionStatus.CANCELLATION_SCHEDULED and sub.cancel_scheduled_at:
        if date_ms is None or ms_from_utc(sub.cancel_scheduled_at) == date_ms:
            return
        raise Skip(
            f"the cancellation on {_ms(date_ms)} was withdrawn: subscription {sub.id} now "
            f"cancels on {day(sub.cancel_scheduled_at)}"
        )
    if sub.status in E.SUBSCRIPTION_TERMINAL:
        raise Skip(
            f"subscription {sub.id} is {sub.status}: its cancellation is no longer scheduled"
        )
    raise Skip(f"the cancellation was withdrawn: subscription {sub.id} is {sub.status}")


def customer_cancellation_scheduled(c: Ctx, p) -> list[Email]:
    sub, org, customer = _sub_context(c, p.subscription_id)
    _still_scheduled(sub, p.scheduled_cancellation_date)
    when, name = _ms(p.scheduled_cancellation_date), sub.name or "subscription"
    message = Message(
        "Cancellation Scheduled",
        [f"Your {name} subscription will be canceled on {when}."],
        [("Cancellation date", when or "—")],
        action=("Manage subscription", portal(c, org, customer)),
    )
    return [
        Email(
            "send-customer-subscription-cancellation-scheduled-notification",
            _customer_email(customer),
            subject(
                f"Cancellation Scheduled: Your {name} subscription will be canceled on {when}",
                sub.livemode,
            ),
            message,
            customer_sender(c, org),
        )
    ]


def customer_trial_expired(c: Ctx, p) -> list[Email]:
    sub, org, customer = _sub_context(c, p.subscription_id)
    message = Message(
        "Your trial has ended",
        [
            f"Your {sub.name or 'subscription'} trial with {org.name} has ended. "
            "Add a payment method to keep your subscription."
        ],
        action=("Add Payment Method", portal(c, org, customer)),
    )
    return [
        Email(
            "send-customer-trial-expired-notification",
            _customer_email(customer),
            subject("Action Required: Update Your Payment Method", sub.livemode),
            message,
            customer_sender(c, org),
        )
    ]


# -- organisation emails -------------------------------------------------------------------
def _to_members(
    c: Ctx,
    task: str,
    org: Organization,
    preference: str | None,
    livemode: bool,
    title: str,
    message: Message,
) -> list[Email]:
    c.org_name = org.name
    to = members(c.s, org.id, preference, livemode)
    if not to:
        raise Skip(f"no member of {org.id} wants {task}")
    return [Email(task, to, subject(title, livemode), message, org_sender(c))]


def _payment_data(c: Ctx, p):
    data = p.payment_data
    org = _get(c.s, Organization, data.get("organizationId"), "organization")
    customer = _get(c.s, Customer, data.get("customerId"), "customer")
    amount = format_money(
        int(data.get("amount") or 0), data.get("currency") or org.default_currency
    )
    return data, org, customer, amount


def org_payment_succeeded(c: Ctx, p) -> list[Email]:
    data, org, customer, amount = _payment_data(c, p)
    message = Message(
        f"Successful payment from {customer.name}!",
        [f"{customer.name} paid {amount}."],
        [
            ("Amount", amount),
            ("Invoice #", data.get("invoiceNumber") or "—"),
            ("Customer", f"{customer.name} <{customer.email}>"),
        ],
        action=("View customer", f"{c.mail.app_url}/customers/{customer.id}"),
    )
    return _to_members(
        c,
        "send-organization-payment-succeeded-notification",
        org,
        "paymentSuccessful",
        bool(data.get("livemode")),
        f"Successful payment from {customer.name}!",
        message,
    )


def org_payment_failed(c: Ctx, p) -> list[Email]:
    data, org, customer, amount = _payment_data(c, p)
    payment = c.s.get(Payment, data.get("paymentId") or "")
    invoice = c.s.get(Invoice, payment.invoice_id) if payment else None
    message = Message(
        f"Payment Failed from {customer.name}",
        [],
        action=("View in Dashboard", f"{c.mail.app_url}/customers/{customer.id}"),
    )
    if (
        invoice is not None
    ):  # the invoice's amount (spec: the line items' sum), as charged and as on its PDF
        totals = _invoice_block(c.s, invoice, message)
        amount = format_money(totals.total, totals.currency)
        facts = [("Amount", amount), ("Amount due", format_money(totals.due, totals.currency))]
    else:
        facts = [("Amount", amount)]
    attempted = format_money(payment.amount, payment.currency) if payment else amount
    message.paragraphs = [f"A payment of {attempted} from {customer.name} failed."]
    message.facts = facts + [
        ("Status", "Failed"),
        ("Invoice #", data.get("invoiceNumber") or "—"),
        ("Reason", data.get("failureReason") or "unknown"),
    ]
    return _to_members(
        c,
        "send-organization-payment-failed-notification",
        org,
        "paymentFailed",
        bool(data.get("livemode")),
        f"Payment Failed from {customer.name}",
        message,
    )


def _sub_object(c: Ctx, p):
    return _sub_context(c, (p.subscription or {}).get("id"))


def org_subscription_created(c: Ctx, p) -> list[Email]:
    sub, org, customer = _sub_object(c, p)
    name, price = _plan(c.s, sub)
    title = f"New Subscription: {customer.name} subscribed to {name}"
    message = Message(
        title, [f"{customer.name} ({customer.email}) subscribed to {name}."], [("Price", price)]
    )
    return _to_members(
        c,
        "send-organization-subscription-created-notification",
        org,
        "subscriptionCreated",
        sub.livemode,
        title,
        message,
    )


def org_subscription_adjusted(c: Ctx, p) -> list[Email]:
    sub, org, customer = _sub_context(c, (p.model_extra or {}).get("subscriptionId"))
    title = f"Subscription Updated - {customer.name or customer.email}"
    return _to_members(
        c,
        "send-organization-subscription-adjusted-notification",
        org,
        "subscriptionAdjusted",
        sub.livemode,
        title,
        _adjusted_message(c, p, sub, org),
    )


def org_subscription_canceled(c: Ctx, p) -> list[Email]:
    sub, org, customer = _sub_object(c, p)
    title = f"Subscription Canceled: {customer.name} canceled {sub.name or 'their subscription'}"
    message = Message(
        title, [title + "."], [("Canceled on", day(sub.canceled_at or sub.updated_at))]
    )
    return _to_members(
        c,
        "send-organization-subscription-canceled-notification",
        org,
        "subscriptionCanceled",
        sub.livemode,
        title,
        message,
    )


def org_cancellation_scheduled(c: Ctx, p) -> list[Email]:
    sub, org, customer = _sub_object(c, p)
    date_ms = (p.model_extra or {}).get("scheduledCancellationDate")
    _still_scheduled(sub, date_ms if isinstance(date_ms, int) else None)
    when = _ms(date_ms)
    title = f"Cancellation Scheduled: {customer.name} scheduled cancellation for {sub.name or 'a subscription'} on {when}"
    message = Message(title, [title + "."], [("Cancellation date", when or "—")])
    return _to_members(
        c,
        "send-organization-subscription-cancellation-scheduled-notification",
        org,
        "subscriptionCancellationScheduled",
        sub.livemode,
        title,
        message,
    )


def org_payouts_enabled(c: Ctx, p) -> list[Email]:
    org = _get(c.s, Organization, p.organization_id, "organization")
    title = f"Payouts Enabled for {org.name}"
    message = Message(
        title,
        [f"Payouts are now enabled for {org.name}: your balance will be paid out to your bank."],
    )
    return _to_members(
        c, "send-organization-payouts-enabled-notification", org, None, True, title, message
    )


def org_onboarding_completed(c: Ctx, p) -> list[Email]:
    org = _get(c.s, Organization, p.organization_id, "organization")
    title = f"Live payments pending review for {org.name}"
    message = Message(
        title,
        [
            f"{org.name} finished Stripe onboarding. Live payments start once our team has "
            "reviewed the account; we will email you when payouts are enabled."
        ],
    )
    return _to_members(
        c, "send-organization-onboarding-completed-notification", org, None, True, title, message
    )


def org_awaiting_payment_confirmation(c: Ctx, p) -> list[Email]:
    """Spec §7.6: a billing run's PaymentIntent is `processing` (a bank debit): tell **all** the
    organisation's members (no preference filter, as upstream) that the money is on its way."""
    payment = _get(c.s, Payment, p.payment_id, "payment")
    invoice = _get(c.s, Invoice, payment.invoice_id, "invoice")
    org, customer = (
        _get(c.s, Organization, payment.organization_id, "organization"),
        _get(c.s, Customer, payment.customer_id, "customer"),
    )
    amount = format_money(payment.amount, payment.currency)
    who = customer.name or customer.email
    message = Message(
        "Awaiting Payment Confirmation",
        [
            f"A payment of {amount} from {who} for invoice #{invoice.invoice_number} is processing.",
            "Bank debits take a few business days to confirm; we will email you when it succeeds "
            "or fails. Nothing needs to be done meanwhile.",
        ],
        [
            ("Amount", amount),
            ("Invoice #", invoice.invoice_number),
            ("Customer", f"{who} <{customer.email}>"),
            ("Status", "Awaiting payment confirmation"),
        ],
        action=("View in Dashboard", f"{c.mail.app_url}/customers/{customer.id}"),
    )
    _invoice_block(c.s, invoice, message)
    c.org_name = org.name
    to = members(c.s, org.id, None, True)  # everyone: no preference, test mode included
    if not to:
        raise Skip(f"organization {org.id} has no member with an email address")
    return [
        Email(
            AWAITING_CONFIRMATION,
            to,
            subject("Awaiting Payment Confirmation", payment.livemode),
            message,
            org_sender(c),
        )
    ]


AWAITING_CONFIRMATION = "send-organization-awaiting-payment-confirmation-notification"

COMPOSERS = {
    "send-customer-payment-succeeded-notification": customer_payment_succeeded,
    "send-customer-payment-failed-notification": customer_payment_failed,
    "send-customer-subscription-created-notification": customer_subscription_created,
    "send-customer-subscription-upgraded-notification": customer_subscription_upgraded,
    "send-customer-subscription-adjusted-notification": customer_subscription_adjusted,
    "send-customer-subscription-canceled-notification": customer_subscription_canceled,
    "send-customer-subscription-cancellation-scheduled-notification": customer_cancellation_scheduled,
    "send-customer-trial-expired-notification": customer_trial_expired,
    "send-organization-payment-succeeded-notification": org_payment_succeeded,
    "send-organization-payment-failed-notification": org_payment_failed,
    "send-organization-subscription-created-notification": org_subscription_created,
    "send-organization-subscription-adjusted-notification": org_subscription_adjusted,
    "send-organization-subscription-canceled-notification": org_subscription_canceled,
    "send-organization-subscription-cancellation-scheduled-notification": org_cancellation_scheduled,
    "send-organization-payouts-enabled-notification": org_payouts_enabled,
    "send-organization-onboarding-completed-notification": org_onboarding_completed,
    AWAITING_CONFIRMATION: org_awaiting_payment_confirmation,  # the spec's direct email, as a task
}
