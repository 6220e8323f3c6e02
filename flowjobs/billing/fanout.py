"""The rows the hourly fan-outs act on, read a page at a time (keyset pagination by id)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col, select

from flowjobs.billing import enums as E
from flowjobs.billing.models import (
    BillingPeriod,
    BillingRun,
    CheckoutSession,
    FeeCalculation,
    Subscription,
)


def _pages(b, query_for, page: int):
    after = ""
    while True:
        with b.unit() as s:
            rows = list(s.exec(query_for(after).limit(page)))
        if not rows:
            return
        yield rows
        after = rows[-1] if isinstance(rows[-1], str) else rows[-1][0]


def due_billing_runs(b, now: datetime, page: int):
    """(id, livemode) of `scheduled` billing runs due by `now`."""
    return _pages(
        b,
        lambda after: (
            select(BillingRun.id, BillingRun.livemode)
            .where(
                BillingRun.status == E.BillingRunStatus.SCHEDULED,
                BillingRun.scheduled_for <= now,
                BillingRun.id > after,
            )
            .order_by(BillingRun.id)
        ),
        page,
    )


def ending_periods(b, start: datetime, end: datetime, page: int):
    """Ids of periods whose end falls in [start, end], whatever their status: a period paid
    after its end (billed at period end, or caught up after an outage) is `completed` before
    its rollover runs, and skipping it stopped the subscription renewing. The rollover of a
    period already rolled does nothing ("next period already exists")."""
    return _pages(
        b,
        lambda after: (
            select(BillingPeriod.id)
            .where(
                BillingPeriod.end_date >= start,
                BillingPeriod.end_date <= end,
                BillingPeriod.id > after,
            )
            .order_by(BillingPeriod.id)
        ),
        page,
    )


def cancellations_due(b, start: datetime, end: datetime, page: int):
    """(id, livemode) of subscriptions whose scheduled cancellation falls in [start, end]."""
    return _pages(
        b,
        lambda after: (
            select(Subscription.id, Subscription.livemode)
            .where(
                col(Subscription.cancel_scheduled_at) >= start,
                col(Subscription.cancel_scheduled_at) <= end,
                Subscription.id > after,
            )
            .order_by(Subscription.id)
        ),
        page,
    )


def purge_expired_checkout_sessions(s, now: datetime, retention_s: float) -> int:
    """Delete checkout sessions older than the retention that did not succeed or stay pending,
    with their fee calculations. Runs inside the hourly cron's transaction."""
    cutoff = now - timedelta(seconds=retention_s)
    expired = select(CheckoutSession.id).where(
        CheckoutSession.created_at < cutoff,
        col(CheckoutSession.status).not_in(
            [E.CheckoutSessionStatus.SUCCEEDED, E.CheckoutSessionStatus.PENDING]
        ),
    )
    s.execute(delete(FeeCalculation).where(col(FeeCalculation.checkout_session_id).in_(expired)))
    return s.execute(delete(CheckoutSession).where(col(CheckoutSession.id).in_(expired))).rowcount
