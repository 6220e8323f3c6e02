"""Cancelling subscriptions (spec §7.8): at once, at the end of the current period, and
un-cancelling a scheduled cancellation.

- `cancel_immediately` is the one path that ends a subscription — `flowjobs billing cancel
  --now`, the scheduled-cancellation job, the rollover, a failed first payment — so all of them
  send the canceled emails, write the `subscription.canceled` event row once (through
  `flowjobs.outbound.emit.emit_event`: hash = sha256 of `{type, id}`), and move the customer onto the organisation's default free plan when a paid
  plan ended and nothing else is current (`move_to_default_plan`).
- `schedule_cancellation` sets `cancellation_scheduled` and sends the cancellation-scheduled
  emails; `uncancel` reverts it (periods, status, the aborted runs still in the future). Neither
  writes an event row (upstream writes none).
- `cancel` / `uncancel_subscription` are the operator's entry points (`flowjobs billing cancel`,
  `billing uncancel`): a wrong state is refused with `WrongState` (exit 2) naming the current one.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select

from flowjobs.billing import enums as E
from flowjobs.billing import repo
from flowjobs.billing.models import (
    BillingPeriod,
    BillingRun,
    Customer,
    PaymentMethod,
    Price,
    Product,
    Subscription,
    SubscriptionItem,
)
from flowjobs.billing.repo import BillingError
from flowjobs.billing.types import ms_from_utc
from flowjobs.core.clock import iso_datetime
from flowjobs.errors import BadInput, NotFound


class WrongState(BadInput):
    """The subscription's state does not allow the operation (exit 2); the message names it."""


def cancel_immediately(
    b, s, sub: Subscription, reason: str = E.CancellationReason.CUSTOMER_REQUEST
) -> bool:
    """Cancel now; returns False when it had already ended (then only the event is ensured)."""
    now = s.info["now"]
    if sub.status in E.SUBSCRIPTION_TERMINAL:
        _emit_canceled(s, sub, now)
        return False
    if sub.scheduled_adjustment_at is not None:
        raise BillingError(f"subscription {sub.id} has a scheduled adjustment; cancel that first")
    # its row locked: a rollover at the same time waits, and sees the periods opened here
    sub = repo.lock_subscription(s, sub.id) or sub
    ends = min(now, sub.cancel_scheduled_at) if sub.cancel_scheduled_at else now
    _open_served(b, s, sub, ends, whole=True)  # the rollover lagged: what was served is billed
    served = served_periods(s, sub, now)  # before the current period is cut short at now
    sub.canceled_at = sub.canceled_at or now
    sub.cancel_scheduled_at = sub.cancel_scheduled_at or now
    sub.cancellation_reason = sub.cancellation_reason or reason
    repo.set_subscription_status(sub, E.SubscriptionStatus.CANCELED)
    _close_periods(s, sub, now, keep=served)
    abort_scheduled_runs(s, sub.id, keep=served)
    withdraw_scheduled_notices(b, s, sub, "withdrawn: the subscription was canceled")
    s.execute(
        update(SubscriptionItem)
        .where(
            col(SubscriptionItem.subscription_id) == sub.id,
            (SubscriptionItem.expired_at == None) | (SubscriptionItem.expired_at > now),
        )
        .values(expired_at=now, updated_at=now)
    )
    b.trigger(
        s,
        "send-customer-subscription-canceled-notification",
        {"subscriptionId": sub.id},
        key=f"send-customer-subscription-canceled-notification-{sub.id}",
    )
    b.trigger(
        s,
        "send-organization-subscription-canceled-notification",
        {"subscription": {"id": sub.id}},
        key=f"send-organization-subscription-canceled-notification-{sub.id}",
    )
    _emit_canceled(s, sub, now)
    move_to_default_plan(s, sub, now)
    return True


def served_periods(s, sub: Subscription, until: datetime) -> set[str]:
    """The periods served in full by `until` whose charge is still owed
    (`repo.owed_once_ended`): a cancellation taking effect then keeps their billing runs.
    Upstream aborted them too, so a subscription billed in arrears and canceled at the period's
    end never paid for its last period, and one whose periods were opened late (the hourly job
    was down) never paid for those (docs/billing.md, "Cancellation")."""
    charging = set(  # a period is kept for its run: one with none left is canceled (§4.2)
        s.exec(
            select(BillingRun.billing_period_id).where(
                BillingRun.subscription_id == sub.id,
                BillingRun.is_adjustment == False,
                col(BillingRun.status).in_(list(LIVE_RUN)),
            )
        )
    )
    periods = s.exec(
        select(BillingPeriod).where(
            BillingPeriod.subscription_id == sub.id,
            col(BillingPeriod.id).in_(list(charging)),
        )
    )
    return {p.id for p in periods if repo.owed_once_ended(s, sub, p, until)}


LIVE_RUN = (
    E.BillingRunStatus.SCHEDULED,
    E.BillingRunStatus.IN_PROGRESS,
    E.BillingRunStatus.AWAITING_PAYMENT_CONFIRMATION,
)


def _open_served(b, s, sub: Subscription, until: datetime, whole: bool) -> None:
    """The periods served before `until` that no rollover opened, opened and their runs
    scheduled (`rollover.open_served_periods`) before a cancellation changes anything: `whole`,
    only those served in full (a cancellation at once); else up to the one containing `until`
    (a cancellation at its end, which dates it)."""
    from flowjobs.billing.rollover import open_served_periods  # it imports this module

    open_served_periods(b, s, sub, until, whole=whole)


def _close_periods(s, sub: Subscription, now: datetime, keep: set[str]) -> None:
    for period in s.exec(select(BillingPeriod).where(BillingPeriod.subscription_id == sub.id)):
        if period.id in keep:  # served and still to be billed: its run settles it
            continue
        if period.start_date > now or period.status == E.BillingPeriodStatus.PAST_DUE:
            repo.set_period_status(period, E.BillingPeriodStatus.CANCELED)
        elif period.end_date > now and period.status not in E.PERIOD_TERMINAL:
            period.end_date = now
            repo.set_period_status(period, E.BillingPeriodStatus.COMPLETED)


def abort_scheduled_runs(s, subscription_id: str, keep: Collection[str] = ()) -> int:
    """Abort the subscription's scheduled runs, except those of the periods in `keep`."""
    return s.execute(
        update(BillingRun)
        .where(
            col(BillingRun.subscription_id) == subscription_id,
            col(BillingRun.status) == E.BillingRunStatus.SCHEDULED,
            col(BillingRun.billing_period_id).not_in(list(keep)),
        )
        .values(
            status=E.BillingRunStatus.ABORTED,
            updated_at=s.info["now"],
            completed_at=s.info["now"],
        )
    ).rowcount


# -- the default plan -------------------------------------------------------------------
def default_free_price(s, sub: Subscription, customer: Customer) -> Price | None:
    """The organisation's default plan (a `default` product, in the customer's pricing model
    when it has one) and its free subscription price, or None."""
    query = (
        select(Price)
        .join(Product, col(Price.product_id) == col(Product.id))
        .where(
            Product.organization_id == sub.organization_id,
            Product.default == True,
            Product.active == True,
            Product.livemode == sub.livemode,
            Price.active == True,
            Price.type == E.PriceType.SUBSCRIPTION,
            Price.unit_price == 0,
            col(Price.interval_unit).is_not(None),
        )
    )
    if customer.pricing_model_id:
        query = query.where(Product.pricing_model_id == customer.pricing_model_id)
    return s.exec(
        query.order_by(col(Price.is_default).desc(), col(Price.created_at), col(Price.id))
    ).first()


def move_to_default_plan(s, sub: Subscription, now: datetime) -> Subscription | None:
    """Upstream's re-creation of the default plan (§7.8): when a paid plan ended, the customer
    has no other current subscription and the organisation has a free default plan, subscribe
    the customer to it — `do_not_charge`, so it neither bills nor needs a card at rollover."""
    from flowjobs.billing import setup

    if sub.is_free_plan:
        return None
    customer = s.get(Customer, sub.customer_id)
    price = None if _current_others(s, sub) else default_free_price(s, sub, customer)
    if price is None:
        return None
    method = (
        s.get(PaymentMethod, sub.default_payment_method_id)
        if sub.default_payment_method_id
        else None
    )
    free, _, _ = setup.subscription(s, customer, price, method, start=now, do_not_charge=True)
    return free  # setup.subscription writes its subscription.created event


# -- scheduled cancellation and un-cancel -------------------------------------------------
SCHEDULED_NOTICES = (
    "send-customer-subscription-cancellation-scheduled-notification",
    "send-organization-subscription-cancellation-scheduled-notification",
)


def withdraw_scheduled_notices(b, s, sub: Subscription, reason: str) -> None:
    """ "Your cancellation is scheduled" emails not yet sent, which an un-cancel, a cancellation
    at once or one scheduled again makes untrue: canceled in the same transaction. (They were
    sent before: a cancel, un-cancel and cancel again ahead of the worker mailed the customer
    twice, and an un-cancel mailed a cancellation that no longer stood.)"""
    for task in SCHEDULED_NOTICES:
        b.withdraw(s, task, f"{task}-{sub.id}-", reason)


def schedule_cancellation(b, s, sub: Subscription, at: datetime | None = None) -> datetime:
    """Cancel at `at` (default: the end of the current period); returns the cancel date."""
    now = s.info["now"]
    if sub.is_free_plan:
        raise BillingError(f"subscription {sub.id} is a free plan; free plans cannot be canceled")
    if sub.status in E.SUBSCRIPTION_TERMINAL:
        raise BillingError(f"subscription {sub.id} is already {sub.status}")
    _open_served(b, s, sub, now, whole=False)  # dated by the real current period, not a stale one
    end = at or sub.current_billing_period_end or now
    sub.cancel_scheduled_at = end
    repo.set_subscription_status(sub, E.SubscriptionStatus.CANCELLATION_SCHEDULED)
    for period in s.exec(
        select(BillingPeriod).where(
            BillingPeriod.subscription_id == sub.id, BillingPeriod.start_date >= end
        )
    ):
        repo.set_period_status(period, E.BillingPeriodStatus.SCHEDULED_TO_CANCEL)
    abort_scheduled_runs(s, sub.id, keep=served_periods(s, sub, end))
    withdraw_scheduled_notices(b, s, sub, "withdrawn: the cancellation was scheduled again")
    date_ms = ms_from_utc(end)
    # keyed by the moment it was scheduled too: cancelling again after an un-cancel is told again
    when = f"{date_ms}-{ms_from_utc(now)}"
    customer, organization = SCHEDULED_NOTICES
    b.trigger(
        s,
        customer,
        {"subscriptionId": sub.id, "scheduledCancellationDate": date_ms},
        key=f"{customer}-{sub.id}-{when}",
    )
    b.trigger(
        s,
        organization,
        {"subscription": {"id": sub.id}, "scheduledCancellationDate": date_ms},
        key=f"{organization}-{sub.id}-{when}",
    )
    return end


def uncancel(b, s, sub: Subscription) -> list[BillingRun]:
    """Revert a scheduled cancellation (§7.8): periods back to upcoming/active, status back to
    trialing/active, `cancel_scheduled_at` cleared, and a new billing run for each aborted one
    the cancellation preempted (`_runs_to_restore`; needs a payment method unless free or
    `do_not_charge`). Returns them."""
    now = s.info["now"]
    if sub.status != E.SubscriptionStatus.CANCELLATION_SCHEDULED:
        raise WrongState(
            f"subscription {sub.id} is {sub.status}; only a cancellation_scheduled "
            "subscription can be un-canceled"
        )
    redo = _runs_to_restore(s, sub, now)
    method_id = sub.default_payment_method_id or sub.backup_payment_method_id
    if redo and not method_id and not (sub.is_free_plan or sub.do_not_charge):
        raise WrongState(
            f"subscription {sub.id} has no payment method to bill its remaining periods; "
            "add one first"
        )
    for period in s.exec(
        select(BillingPeriod).where(
            BillingPeriod.subscription_id == sub.id,
            BillingPeriod.status == E.BillingPeriodStatus.SCHEDULED_TO_CANCEL,
        )
    ):
        period.status = (
            E.BillingPeriodStatus.UPCOMING
            if period.start_date > now
            else E.BillingPeriodStatus.ACTIVE
        )
    trialing = sub.trial_end is not None and sub.trial_end > now
    if repo.owes(s, sub.id):  # a payment failed and is not made good: still past due
        status = E.SubscriptionStatus.PAST_DUE
    else:
        status = E.SubscriptionStatus.TRIALING if trialing else E.SubscriptionStatus.ACTIVE
    repo.set_subscription_status(sub, status)
    sub.cancel_scheduled_at = None
    sub.cancellation_reason = None
    withdraw_scheduled_notices(b, s, sub, "withdrawn: the subscription was un-canceled")
    if sub.is_free_plan or sub.do_not_charge or not method_id:  # no method: nothing to redo
        return []
    return [_restore_run(b, s, sub, old, method_id) for old in redo]


def _runs_to_restore(s, sub: Subscription, now: datetime) -> list[BillingRun]:
    """Aborted runs that the cancellation preempted, of periods with no other live or paid run:
    those due in the future, those aborted before they were due (a retry of the dunning ladder:
    un-canceled after its day, it was lost, and the period never collected), and the current
    period's that never reached Stripe. (A run aborted once it had a PaymentIntent — its
    PaymentIntent canceled — is not the cancellation's doing, and stays.)"""
    aborted = [
        run
        for run in s.exec(
            select(BillingRun)
            .where(
                BillingRun.subscription_id == sub.id,
                BillingRun.status == E.BillingRunStatus.ABORTED,
            )
            .order_by(col(BillingRun.scheduled_for).desc(), col(BillingRun.id))
        )
        if run.scheduled_for > now
        or (run.completed_at is not None and run.completed_at < run.scheduled_for)
        or (  # the current period's first run, aborted before it started (no PaymentIntent)
            run.stripe_payment_intent_id is None
            and s.get(BillingPeriod, run.billing_period_id).end_date > now
        )
    ]
    live = {
        E.BillingRunStatus.SCHEDULED,
        E.BillingRunStatus.IN_PROGRESS,
        E.BillingRunStatus.AWAITING_PAYMENT_CONFIRMATION,
        E.BillingRunStatus.SUCCEEDED,
    }
    taken = {
        r.billing_period_id
        for r in s.exec(
            select(BillingRun).where(
                col(BillingRun.subscription_id) == sub.id, col(BillingRun.status).in_(list(live))
            )
        )
    }
    chosen: dict[str, BillingRun] = {}
    for run in aborted:
        period = s.get(BillingPeriod, run.billing_period_id)
        if (
            run.billing_period_id not in taken
            and period.status not in E.PERIOD_TERMINAL
            and _latest_of_period(s, run)  # not one a later attempt followed (a spent ladder)
        ):
            chosen.setdefault(run.billing_period_id, run)
    return list(chosen.values())


def _latest_of_period(s, run: BillingRun) -> bool:
    """No attempt of the period ran after `run` (restored once, a retry that then failed: the
    ladder is spent, and a second un-cancel must not start it again)."""
    later = s.exec(
        select(BillingRun.id).where(
            BillingRun.billing_period_id == run.billing_period_id,
            BillingRun.is_adjustment == False,
            BillingRun.id != run.id,
            BillingRun.status != E.BillingRunStatus.ABORTED,
            BillingRun.scheduled_for >= run.scheduled_for,
        )
    ).first()
    return later is None


def _restore_run(b, s, sub: Subscription, old: BillingRun, method_id: str) -> BillingRun:
    when = max(old.scheduled_for, s.info["now"])  # one whose day has passed: due now
    return repo.insert_scheduled_run(
        b, s, sub, old.billing_period_id, when, old.attempt_number, method_id
    )


# -- the operator's entry points --------------------------------------------------------
def parse_reason(text: str | None) -> tuple[str, str | None]:
    """`--reason`: one of the spec's reasons is stored as it is; any other text is stored as
    `other`, with the text kept in the subscription's metadata (`cancellationNote`)."""
    if not text:
        return E.CancellationReason.CUSTOMER_REQUEST, None
    if text in {r.value for r in E.CancellationReason}:
        return text, None
    return E.CancellationReason.OTHER, text


def _load(b, s, subscription_id: str) -> Subscription:
    sub = repo.lock_subscription(s, subscription_id)  # a cancellation may open periods
    if sub is None:
        raise NotFound(f"no subscription {subscription_id!r}")
    return sub


def cancel(b, subscription_id: str, *, now: bool = False, reason: str | None = None) -> dict:
    """`flowjobs billing cancel`: at the end of the current period, or `now`."""
    code, note = parse_reason(reason)
    with b.unit() as s:
        sub = _load(b, s, subscription_id)
        if sub.status in E.SUBSCRIPTION_TERMINAL:
            raise WrongState(f"subscription {sub.id} is {sub.status}; there is nothing to cancel")
        if sub.scheduled_adjustment_at is not None:
            # §7.8: a pending plan change must be withdrawn first (upstream: ValidationError)
            raise WrongState(
                f"subscription {sub.id} is {sub.status} with a plan change scheduled for "
                f"{iso_datetime(sub.scheduled_adjustment_at)}; withdraw it first (billing adjust "
                f"--price {sub.price_id}, its current price)"
            )
        if not now and sub.status == E.SubscriptionStatus.CANCELLATION_SCHEDULED:
            on = iso_datetime(sub.cancel_scheduled_at) if sub.cancel_scheduled_at else "a date"
            raise WrongState(
                f"subscription {sub.id} is cancellation_scheduled (on {on}); use --now, or "
                "uncancel it"
            )
        if not now and sub.is_free_plan:
            raise WrongState(
                f"subscription {sub.id} is {sub.status} on a free plan; free plans cannot be "
                "canceled at period end (use --now)"
            )
        if note:
            sub.metadata_ = {**(sub.metadata_ or {}), "cancellationNote": note}
        before = _current_others(s, sub)
        if now:  # a reason given now replaces the one a scheduled cancellation recorded
            sub.cancellation_reason = code if reason else (sub.cancellation_reason or code)
            cancel_immediately(b, s, sub, reason=code)
        else:
            schedule_cancellation(b, s, sub)
            sub.cancellation_reason = code
        s.flush()
        moved = [other for other in _current_others(s, sub) if other not in before]
        return {**_outcome(s, sub), "movedToSubscriptionId": moved[0] if moved else None}


def uncancel_subscription(b, subscription_id: str) -> dict:
    """`flowjobs billing uncancel`."""
    with b.unit() as s:
        sub = _load(b, s, subscription_id)
        runs = uncancel(b, s, sub)
        s.flush()
        return {**_outcome(s, sub), "billingRuns": [r.id for r in runs]}


def _current_others(s, sub: Subscription) -> list[str]:
    return list(
        s.exec(
            select(Subscription.id)
            .where(
                Subscription.customer_id == sub.customer_id,
                Subscription.id != sub.id,
                col(Subscription.status).not_in(list(E.SUBSCRIPTION_TERMINAL)),
            )
            .order_by(col(Subscription.created_at))
        )
    )


def _outcome(s, sub: Subscription) -> dict:
    at = iso_datetime
    return {
        "id": sub.id,
        "status": sub.status,
        "cancelScheduledAt": at(sub.cancel_scheduled_at),
        "canceledAt": at(sub.canceled_at),
        "cancellationReason": sub.cancellation_reason,
        "customerId": sub.customer_id,
    }


# -- event rows -------------------------------------------------------------------------
def _emit_canceled(s, sub: Subscription, now: datetime) -> None:
    """The `subscription.canceled` event, once per subscription (flowjobs.outbound.emit)."""
    from flowjobs.outbound.emit import emit_event

    emit_event(
        s,
        E.FlowgladEventType.SUBSCRIPTION_CANCELED,
        E.EventNoun.SUBSCRIPTION,
        sub.id,
        organization_id=sub.organization_id,
        livemode=sub.livemode,
        customer=s.get(Customer, sub.customer_id),
        now=now,
    )
