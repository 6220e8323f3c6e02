"""Period rollover (spec §7.3): close the period that just ended, open the next one, and
schedule its billing run.

Decisions (docs/billing.md):
- The close honours discounts and tax: what was due is the period's invoice (subtotal + tax)
  or, without an invoice, the fee calculation of its items (upstream compared raw item
  totals, closing discounted, fully paid periods `past_due` — §13.6).
- The new billing run is *triggered*, never also executed inline: one `attempt-billing-run`
  keyed `attempt-billing-run:<id>`, due at the run's `scheduled_for` (period start, or period
  end when billing at period end — upstream charged those at once, §13.2).
- A cancellation that fell due is finished with the same `cancel_immediately` the
  cancellation job uses, notifications included (upstream's rollover path sent none, so
  whether customers heard about it depended on which job ran first).
- A subscription whose cancellation is scheduled for later gets no new period and keeps
  `cancellation_scheduled` (upstream made it `past_due`); the cancellation job ends it.
"""

from __future__ import annotations

from datetime import datetime

from flowjobs import ids
from flowjobs.billing import enums as E
from flowjobs.billing import fees, repo
from flowjobs.billing.cancel import cancel_immediately
from flowjobs.billing.models import (
    BillingPeriod,
    BillingRun,
    Organization,
    Subscription,
)
from flowjobs.billing.periods import next_period
from flowjobs.billing.repo import BillingError
from flowjobs.billing.runs import RunReport
from flowjobs.billing.totals import compute
from flowjobs.core.clock import iso_datetime
from flowjobs.errors import NotFound


def transition_billing_period(b, billing_period_id: str) -> RunReport:
    with b.unit() as s:
        period = s.get(BillingPeriod, billing_period_id)
        if period is None:
            raise NotFound(f"billing period {billing_period_id} does not exist")
        now = s.info["now"]
        if period.end_date > now:
            raise BillingError(
                f"billing period {period.id} ends {iso_datetime(period.end_date)}, in the future"
            )
        # the subscription's row locked (PostgreSQL): two rollovers of one period at once (the
        # hourly child and an operator's trigger; a catch-up reaching a period whose own
        # rollover runs) wait here, and the second sees the period the first opened. A period
        # already `completed` gets no write that would have made them wait.
        sub = repo.lock_subscription(s, period.subscription_id)
        assert sub is not None  # a period's subscription is never deleted
        closed = close_period(b, s, period)
        if sub.status == E.SubscriptionStatus.CREDIT_TRIAL or not sub.renews:
            raise BillingError(
                f"subscription {sub.id} does not renew; it has no billing periods to roll"
            )
        outcome = _roll(b, s, period, sub, now)
        opened = repo.latest_period(s, sub.id)
        caught_up = 0
        while (  # the hourly job was down over whole periods: each missed one opened in turn,
            # closed, and its run scheduled (the next window never saw a period opened after
            # its end, and the subscription stopped renewing)
            opened is not None
            and opened.id != period.id
            and opened.end_date <= now
            and opened.status not in E.PERIOD_TERMINAL
            and caught_up < MAX_CATCH_UP
        ):
            close_period(b, s, opened)
            _roll(b, s, opened, sub, now)
            following = repo.latest_period(s, sub.id)
            if following is None or following.id == opened.id:
                break
            opened, caught_up = following, caught_up + 1
        if caught_up:
            outcome += f"; {caught_up} more missed period(s) opened"
        return RunReport(period.id, outcome, period.status, f"period closed {closed}; {outcome}")


MAX_CATCH_UP = 1000  # periods one rollover opens after an outage (a minute-long interval: 16 h)


def close_period(b, s, period: BillingPeriod) -> str:
    """`completed` when what was due is paid, else `past_due`; terminal periods stay."""
    repo.lock_period(s, period.id)  # its run's outcome may be settling it now: after that
    if period.status in E.PERIOD_TERMINAL:
        return period.status
    invoice = repo.first_invoice(s, period.id)
    # refunds at Stripe are the merchant's gift back, not a debt: such a period closed past_due
    refunded = invoice is not None and invoice.status in E.INVOICE_REFUNDED
    owed = due_for_period(b, s, period) - repo.net_settled(s, period.id, net=not refunded)
    repo.set_period_status(
        period, E.BillingPeriodStatus.COMPLETED if owed <= 0 else E.BillingPeriodStatus.PAST_DUE
    )
    return period.status


def due_for_period(b, s, period: BillingPeriod) -> int:
    invoice = repo.first_invoice(s, period.id)
    if invoice is not None and invoice.subtotal is not None:
        return invoice.subtotal + (invoice.tax_amount or 0)
    sub = s.get(Subscription, period.subscription_id)
    org = s.get(Organization, sub.organization_id)
    redemption = repo.active_discount(s, sub.id)
    discount = (
        fees.Discount(redemption.discount_amount_type, redemption.discount_amount)
        if redemption
        else None
    )
    result = compute(
        org.default_currency,
        [(i.unit_price, i.quantity) for i in repo.period_items(s, period.id)],
        discount=discount,
    )  # the invoice money rule (flowjobs.billing.totals); no fees needed here
    tax = 0
    if fees.is_merchant_of_record(org.stripe_connect_contract_type) and result.subtotal > 0:
        tax = b.tax.calculate(
            pretax_amount=result.subtotal,
            currency=org.default_currency,
            customer_country=None,
            organization_id=org.id,
            livemode=period.livemode,
        )
    return result.subtotal + tax


def _roll(b, s, period, sub, now) -> str:
    if sub.status in E.SUBSCRIPTION_TERMINAL:
        return f"subscription is {sub.status}; no new period"
    if sub.cancel_scheduled_at is not None and sub.cancel_scheduled_at <= now:
        # The same path as the cancellation job (notifications included), whichever runs first.
        cancel_immediately(
            b, s, sub, reason=sub.cancellation_reason or E.CancellationReason.CUSTOMER_REQUEST
        )
        return "cancellation was due; subscription canceled"
    if repo.later_period_exists(s, sub.id, period.start_date):
        return "next period already exists"
    if sub.cancel_scheduled_at is not None:
        return "cancellation scheduled; no new period"
    return f"opened period {_open_next(b, s, sub, now).id}"


def open_served_periods(b, s, sub: Subscription, until: datetime, *, whole: bool = False) -> int:
    """Open, in turn, each period the subscription served before `until` that no rollover
    opened yet (the hourly job was down, or has not run since the period's end): the latest
    closed, the next opened with its run, up to the one containing `until` — or, `whole`, only
    those that ended by `until`. A cancellation calls it first, so the periods served before it
    are billed once each and one at period end is dated by the real current period
    (docs/billing.md "Cancellation"); upstream dated it by the stale period and never billed the
    others. Returns how many it opened."""
    if (
        sub.status in E.SUBSCRIPTION_TERMINAL
        or sub.status == E.SubscriptionStatus.CREDIT_TRIAL
        or not sub.renews
    ):
        return 0
    opened = 0
    latest = repo.latest_period(s, sub.id)
    while latest is not None and latest.end_date < until and opened < MAX_CATCH_UP:
        if whole and _following(sub, latest)[1] > until:
            break  # a cancellation at once: the period it would cut short is not opened
        close_period(b, s, latest)
        latest, opened = _open_next(b, s, sub, s.info["now"]), opened + 1
    return opened


def _following(sub: Subscription, latest: BillingPeriod) -> tuple[datetime, datetime]:
    """(start, end) of the period after `latest` (spec §7.1)."""
    if sub.interval is None or sub.interval_count is None:
        raise BillingError(f"subscription {sub.id} renews but has no billing interval")
    return next_period(latest.end_date, sub.interval, sub.interval_count)


def _open_next(b, s, sub: Subscription, now: datetime) -> BillingPeriod:
    """The period after the subscription's latest, its items, its billing run; returns it."""
    latest = repo.latest_period(s, sub.id)
    assert latest is not None  # a renewing subscription has its first period
    start, end = _following(sub, latest)
    new = BillingPeriod(
        id=ids.new_id("billing_period"),
        livemode=sub.livemode,
        subscription_id=sub.id,
        start_date=start,
        end_date=end,
        status=E.BillingPeriodStatus.ACTIVE if start <= now else E.BillingPeriodStatus.UPCOMING,
    )
    s.add(new)
    for item in repo.active_items(s, sub.id, start):
        if item.manually_created or item.price_id is None:
            continue
        s.add(repo.new_period_item(sub, new.id, item.name, item.unit_price, item.quantity))
    sub.current_billing_period_start, sub.current_billing_period_end = start, end
    from flowjobs.billing.adjust import apply_scheduled

    apply_scheduled(
        s, sub, start
    )  # a plan change scheduled for the period end: its items were copied above
    method_id = sub.default_payment_method_id or sub.backup_payment_method_id
    if method_id and not sub.do_not_charge:
        schedule_run(b, s, sub, new, method_id)
    status = (
        E.SubscriptionStatus.ACTIVE
        if (method_id or sub.do_not_charge)
        else E.SubscriptionStatus.PAST_DUE
    )
    if sub.status != E.SubscriptionStatus.CANCELLATION_SCHEDULED:  # a period served before it
        repo.set_subscription_status(sub, status)
    if latest.trial_period and status == E.SubscriptionStatus.PAST_DUE:
        b.trigger(
            s,
            "send-customer-trial-expired-notification",
            {"subscriptionId": sub.id},
            key=f"send-customer-trial-expired-notification-{sub.id}",
        )
    return new


def schedule_run(
    b, s, sub: Subscription, period: BillingPeriod, method_id: str, attempt: int = 1
) -> BillingRun:
    """Insert the period's billing run and trigger `attempt-billing-run` for when it is due."""
    when = period.start_date if sub.run_billing_at_period_start else period.end_date
    return repo.insert_scheduled_run(b, s, sub, period.id, when, attempt, method_id)
