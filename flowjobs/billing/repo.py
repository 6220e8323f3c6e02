"""Reads and guarded writes shared by the billing jobs.

Status changes go through the `set_*_status` guards (upstream's `safely*` updaters): a
terminal status is never left, the same status is a no-op, and each returns whether it
changed anything so callers fire follow-ups only on a real transition.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, or_, update
from sqlmodel import Session, col, select

from flowjobs import ids
from flowjobs.billing import enums as E
from flowjobs.billing.models import (
    BillingPeriod,
    BillingPeriodItem,
    BillingRun,
    Customer,
    DiscountRedemption,
    Invoice,
    Payment,
    Subscription,
    SubscriptionItem,
)
from flowjobs.errors import FlowjobsError


class BillingError(FlowjobsError):
    """A billing rule refused the operation (the run ends `failed` with this message)."""


class TerminalStateError(BillingError):
    pass


def set_subscription_status(sub, status: str) -> bool:
    if sub.status == status:
        return False
    if sub.status in E.SUBSCRIPTION_TERMINAL:
        raise TerminalStateError(f"subscription {sub.id} is {sub.status}; cannot become {status}")
    if status == E.SubscriptionStatus.CREDIT_TRIAL:
        raise BillingError("credit_trial is deprecated and never set")
    if not sub.renews and status not in (
        E.SubscriptionStatus.ACTIVE,
        E.SubscriptionStatus.CANCELED,
    ):
        raise BillingError(f"non-renewing subscription {sub.id} cannot become {status}")
    sub.status = status
    return True


def advance(row, status: str, terminal) -> bool:
    """Move `row` (a billing period, invoice or payment) to `status` unless it is already there
    or has reached one of its `terminal` states, which are final. True when it changed."""
    if row.status == status or row.status in terminal:
        return False
    row.status = status
    return True


def set_period_status(period: BillingPeriod, status: str) -> bool:
    return advance(period, status, E.PERIOD_TERMINAL)


def set_invoice_status(invoice: Invoice, status: str) -> bool:
    """As `advance`; a refunded invoice (`partially_refunded` too) is never moved back to
    `paid` by a redelivered payment event (its refunds were then owed again)."""
    if invoice.status in E.INVOICE_REFUNDED:
        return False
    return advance(invoice, status, E.INVOICE_TERMINAL)


def set_payment_status(payment: Payment, status: str) -> bool:
    return advance(payment, status, E.PAYMENT_TERMINAL)


def net_settled(s: Session, billing_period_id: str, net: bool = True) -> int:
    """Σ amount − refunded_amount over the period's succeeded and refunded payments (`net`
    false: Σ amount, for a period whose invoice the merchant refunded: not owed again)."""
    amount = Payment.amount - func.coalesce(Payment.refunded_amount, 0) if net else Payment.amount
    total = s.exec(
        select(func.coalesce(func.sum(amount), 0)).where(
            Payment.billing_period_id == billing_period_id,
            col(Payment.status).in_(list(E.PAYMENT_SETTLED)),
        )
    ).one()
    return int(total)


def owed_once_ended(s: Session, sub: Subscription, period: BillingPeriod, until: datetime) -> bool:
    """Whether a period's charge is still owed when the subscription ends at `until`: served in
    full by then, not settled (`canceled`; `completed`: paid, or cut short by a cancellation at
    once), and either billed at its end (`run_billing_at_period_start` false) or billed at its
    start but not yet billed when the subscription ended — no payment of a regular run of it
    made before `until` (a period opened late because the hourly job was down,
    `rollover.open_served_periods`, or whose run had not started yet). Such a period's run
    charges, and retries, once the subscription has ended. A period billed at its start and
    billed before the end is not chased after it (upstream aborts its retries). The answer is a
    fact of the time of the end: attempts made after it do not change it."""
    if period.end_date > until or period.status in (
        E.BillingPeriodStatus.CANCELED,
        E.BillingPeriodStatus.COMPLETED,
    ):
        return False
    if not sub.run_billing_at_period_start:
        return True
    billed_before = s.exec(
        select(Payment.id)
        .join(BillingRun, col(BillingRun.id) == col(Payment.billing_run_id))
        .where(
            Payment.billing_period_id == period.id,
            BillingRun.is_adjustment == False,
            Payment.created_at < until,
        )
        .limit(1)
    ).first()
    return billed_before is None


class ChargeStanding(StrEnum):
    """Whether a period's billing run may charge, asked by the run, its failure and its retry."""

    LIVE = "live"  # the subscription runs (or its cancellation is not yet due)
    OWED_AFTER_END = "owed after end"  # ended or ending, but this period was served: charge it
    ENDED = "ended"  # ended, and nothing of this period is owed: abort


def charge_standing(
    s: Session, sub: Subscription, period: BillingPeriod, now: datetime
) -> ChargeStanding:
    """The one answer to "has the subscription ended (or is its cancellation due), and is this
    period still owed?" (`owed_once_ended`)."""
    ends = sub.canceled_at or sub.cancel_scheduled_at
    ending = sub.status in E.SUBSCRIPTION_TERMINAL or (
        sub.cancel_scheduled_at is not None and sub.cancel_scheduled_at <= now
    )  # ended, or its cancellation due and its job not run yet
    if ending and ends is not None and owed_once_ended(s, sub, period, ends):
        return ChargeStanding.OWED_AFTER_END
    if sub.status in E.SUBSCRIPTION_TERMINAL:
        return ChargeStanding.ENDED
    return ChargeStanding.LIVE


def period_items(s: Session, billing_period_id: str) -> list[BillingPeriodItem]:
    return list(
        s.exec(
            select(BillingPeriodItem)
            .where(BillingPeriodItem.billing_period_id == billing_period_id)
            .order_by(col(BillingPeriodItem.created_at), col(BillingPeriodItem.id))
        )
    )


def new_period_item(
    sub: Subscription, billing_period_id: str, name: str | None, unit_price: int, quantity: int
) -> BillingPeriodItem:
    """A billing period's copy of one of its subscription's items (what the period bills)."""
    return BillingPeriodItem(
        id=ids.new_id("billing_period_item"),
        livemode=sub.livemode,
        billing_period_id=billing_period_id,
        quantity=quantity,
        unit_price=unit_price,
        name=name or "",
        description="",
    )


def lock_subscription(s: Session, subscription_id: str) -> Subscription | None:
    """The subscription, its row locked to the end of the transaction (PostgreSQL; SQLite's
    writer is one at a time). Whatever opens periods or ends the subscription takes it first —
    the rollover, a plan change, a cancellation — so two of them at once never both open a
    period or both charge a proration."""
    return s.exec(
        select(Subscription)
        .where(Subscription.id == subscription_id)
        .with_for_update()
        .execution_options(populate_existing=True)  # as it is now the row is ours, not as read
    ).first()


def lock_period(s: Session, billing_period_id: str) -> BillingPeriod | None:
    """The billing period, its row locked and read again (PostgreSQL): the rollover closing it
    and its run's outcome settling it at the same time wrote one over the other, and a period
    paid after its end was left `past_due`."""
    return s.exec(
        select(BillingPeriod)
        .where(BillingPeriod.id == billing_period_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def first_invoice(s: Session, billing_period_id: str) -> Invoice | None:
    """The period's own invoice: the first not made by a plan change (an adjustment run bills
    its proration on an invoice of its own, which must never be taken for the period's)."""
    adjustments = select(BillingRun.id).where(
        BillingRun.billing_period_id == billing_period_id, BillingRun.is_adjustment == True
    )
    return s.exec(
        select(Invoice)
        .where(
            Invoice.billing_period_id == billing_period_id,
            or_(
                col(Invoice.billing_run_id).is_(None),
                col(Invoice.billing_run_id).not_in(adjustments),
            ),
        )
        .order_by(col(Invoice.created_at), col(Invoice.id))
    ).first()


def invoice_of_run(s: Session, billing_run_id: str) -> Invoice | None:
    return s.exec(
        select(Invoice)
        .where(Invoice.billing_run_id == billing_run_id)
        .order_by(col(Invoice.created_at), col(Invoice.id))
    ).first()


def payment_of_run(s: Session, billing_run_id: str) -> Payment | None:
    return s.exec(
        select(Payment)
        .where(Payment.billing_run_id == billing_run_id)
        .order_by(col(Payment.created_at), col(Payment.id))
    ).first()


def active_discount(s: Session, subscription_id: str) -> DiscountRedemption | None:
    return s.exec(
        select(DiscountRedemption)
        .where(
            DiscountRedemption.subscription_id == subscription_id,
            DiscountRedemption.fully_redeemed == False,
        )
        .order_by(col(DiscountRedemption.created_at), col(DiscountRedemption.id))
    ).first()


def active_items(s: Session, subscription_id: str, at: datetime) -> list[SubscriptionItem]:
    """Items active at `at`: added on or before it and not expired by then."""
    rows = s.exec(
        select(SubscriptionItem)
        .where(
            SubscriptionItem.subscription_id == subscription_id, SubscriptionItem.added_date <= at
        )
        .order_by(col(SubscriptionItem.added_date), col(SubscriptionItem.id))
    )
    return [i for i in rows if i.expired_at is None or i.expired_at > at]


def allocate_invoice_number(s: Session, customer: Customer) -> str:
    """`<invoice_number_base>-<NNNNN>`, from a per-customer counter bumped atomically.

    Upstream counted the customer's invoices, which two concurrent runs read alike (§13.16).
    """
    result = s.execute(
        update(Customer)
        .where(col(Customer.id) == customer.id)
        .values(invoice_number_next=col(Customer.invoice_number_next) + 1)
        .returning(col(Customer.invoice_number_next))
    ).one()
    s.refresh(customer)
    return f"{customer.invoice_number_base}-{result[0] - 1:05d}"


def runs_of_period(s: Session, billing_period_id: str) -> list[BillingRun]:
    return list(s.exec(select(BillingRun).where(BillingRun.billing_period_id == billing_period_id)))


def later_period_exists(s: Session, subscription_id: str, after: datetime) -> bool:
    return (
        s.exec(
            select(BillingPeriod.id).where(
                BillingPeriod.subscription_id == subscription_id, BillingPeriod.start_date > after
            )
        ).first()
        is not None
    )


def latest_period(s: Session, subscription_id: str) -> BillingPeriod | None:
    return s.exec(
        select(BillingPeriod)
        .where(BillingPeriod.subscription_id == subscription_id)
        .order_by(col(BillingPeriod.start_date).desc())
    ).first()


def insert_scheduled_run(
    b, s: Session, sub, period_id: str, when: datetime, attempt: int, method_id: str
) -> BillingRun:
    """A scheduled billing run of `sub` for the period `period_id`, due `when`, inserted with its
    `attempt-billing-run` job (see `BillingService.queue_billing_run`)."""
    run = BillingRun(
        id=ids.new_id("billing_run"),
        livemode=sub.livemode,
        billing_period_id=period_id,
        scheduled_for=when,
        status=E.BillingRunStatus.SCHEDULED,
        attempt_number=attempt,
        subscription_id=sub.id,
        payment_method_id=method_id,
    )
    s.add(run)
    s.flush()
    b.queue_billing_run(s, run.id, when)
    return run


def owes(s: Session, subscription_id: str) -> bool:
    """Whether the subscription's latest settled regular charge was declined: the state
    outcomes leave as `past_due` (a declined charge), and undo with `active` when a later
    regular run is paid. A run failed for a rule (no payment method, no Stripe customer) made
    no payment and is passed over; adjustment runs pay prorations, not periods."""
    settled = (
        select(BillingRun.id, BillingRun.status)
        .where(
            BillingRun.subscription_id == subscription_id,
            BillingRun.is_adjustment == False,
            col(BillingRun.status).in_([E.BillingRunStatus.SUCCEEDED, E.BillingRunStatus.FAILED]),
        )
        .order_by(
            func.coalesce(BillingRun.completed_at, BillingRun.updated_at).desc(),
            col(BillingRun.id).desc(),
        )
    )
    for run_id, status in s.exec(settled):
        if status == E.BillingRunStatus.SUCCEEDED:
            return False
        declined = select(Payment.id).where(
            Payment.billing_run_id == run_id, Payment.status == E.PaymentStatus.FAILED
        )
        if s.exec(declined).first() is not None:
            return True
    return False
