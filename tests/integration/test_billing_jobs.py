"""Rollover, scheduled cancellation, stale payments, discounts — against localstripe, both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from flowjobs.billing.models import BillingPeriod, BillingRun, Invoice, Payment, Subscription
from flowjobs.billing.types import utc_from_ms
from flowjobs.core.clock import iso
from tests.billing_helpers import (
    DECLINING,
    drain,
    get,
    runs_of,
    seed,
    standalone_payment,
    stripe_sections,
    utc,
)
from tests.cli_helpers import wait_until


@pytest.fixture
def brt(make_runtime, localstripe_url):
    return make_runtime(**stripe_sections(localstripe_url))


def at(clock, moment):
    clock.set(int(moment.timestamp() * 1000))


def hourly(rt, last=None):
    payload = {"timestamp": iso(rt.clock.now_ms()), "scheduleId": "hourly-cron"}
    if last is not None:
        payload["lastTimestamp"] = iso(int(last.timestamp() * 1000))
    return rt.trigger("hourly-cron", payload)


def periods_of(rt, subscription_id):
    with rt.billing.unit() as s:
        return list(
            s.exec(
                select(BillingPeriod)
                .where(BillingPeriod.subscription_id == subscription_id)
                .order_by(BillingPeriod.start_date)
            )
        )


def test_rollover_from_jan_31_clamps_to_feb_28_and_bills_each_period(brt, clock):
    at(clock, utc(2027, 1, 31, 10))
    seeded = seed(brt, unit_price=1200)
    hourly(brt)
    drain(brt)
    at(clock, utc(2027, 2, 28, 10, 30))
    hourly(brt, last=utc(2027, 2, 28, 9, 30))
    drain(brt)

    periods = periods_of(brt, seeded.subscription_id)
    assert [(p.start_date, p.end_date) for p in periods] == [
        (utc(2027, 1, 31, 10), utc(2027, 2, 28, 10)),
        (utc(2027, 2, 28, 10), utc(2027, 3, 28, 10)),
    ]
    assert [p.status for p in periods] == ["completed", "active"]
    runs = runs_of(brt, seeded.subscription_id)
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert runs[1].scheduled_for == utc(2027, 2, 28, 10)
    sub = get(brt, Subscription, seeded.subscription_id)
    assert (sub.current_billing_period_start, sub.current_billing_period_end) == (
        utc(2027, 2, 28, 10),
        utc(2027, 3, 28, 10),
    )
    with brt.billing.unit() as s:
        numbers = sorted(
            s.exec(select(Invoice.invoice_number).where(Invoice.customer_id == seeded.customer_id))
        )
    assert [n[-6:] for n in numbers] == ["-00000", "-00001"]
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 2}

    hourly(brt, last=utc(2027, 2, 28, 9, 30))  # the same slot again: nothing new
    drain(brt)
    assert len(periods_of(brt, seeded.subscription_id)) == 2
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 2}


def test_discounted_paid_period_closes_completed(brt, clock):
    seeded = seed(brt, unit_price=2000, discount=(25, "percent"))
    hourly(brt)
    drain(brt)
    payment = _payment_of(brt, seeded.billing_run_id)
    assert payment.amount == 1500  # 25 % off 2000
    end = get(brt, BillingPeriod, seeded.period_id).end_date
    at(clock, end + timedelta(minutes=5))
    hourly(brt)
    drain(brt)
    assert (
        get(brt, BillingPeriod, seeded.period_id).status == "completed"
    )  # upstream: past_due (§13.6)


def test_scheduled_cancellation_ends_the_subscription_at_period_end(brt, clock):
    from flowjobs.billing.cancel import schedule_cancellation

    seeded = seed(brt)
    hourly(brt)
    drain(brt)
    with brt.billing.unit() as s:
        end = schedule_cancellation(brt.billing, s, s.get(Subscription, seeded.subscription_id))
    sub = get(brt, Subscription, seeded.subscription_id)
    assert (sub.status, sub.cancel_scheduled_at) == ("cancellation_scheduled", end)

    at(clock, end + timedelta(minutes=1))
    hourly(brt)
    drain(brt)
    sub = get(brt, Subscription, seeded.subscription_id)
    assert sub.status == "canceled" and sub.canceled_at == end + timedelta(minutes=1)
    assert len(periods_of(brt, seeded.subscription_id)) == 1  # no new period, no new charge
    assert [r.status for r in runs_of(brt, sub.id)] == ["succeeded"]
    tasks = [r["task"] for r in brt.store.list_runs(limit=500)]
    assert tasks.count("send-customer-subscription-cancellation-scheduled-notification") == 1
    assert tasks.count("send-customer-subscription-canceled-notification") == 1
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


def _arrears_cancelled_at_period_end(brt, clock):
    """A subscription billed at each period's end, its cancellation scheduled for that end."""
    from flowjobs.billing.cancel import schedule_cancellation

    seeded = seed(brt, unit_price=3100, arrears=True)
    with brt.billing.unit() as s:
        end = schedule_cancellation(brt.billing, s, s.get(Subscription, seeded.subscription_id))
    assert [r.status for r in runs_of(brt, seeded.subscription_id)] == ["scheduled"]
    at(clock, end + timedelta(minutes=1))
    return seeded


def _billed_once_then_canceled(brt, seeded) -> None:
    sub = get(brt, Subscription, seeded.subscription_id)
    assert sub.status == "canceled"
    assert [r.status for r in runs_of(brt, sub.id)] == ["succeeded"]
    [period] = periods_of(brt, sub.id)
    assert period.status == "completed"
    with brt.billing.unit() as s:
        [invoice] = s.exec(select(Invoice).where(Invoice.billing_period_id == period.id))
        [payment] = s.exec(select(Payment).where(Payment.billing_period_id == period.id))
    assert (invoice.status, payment.status, payment.amount) == ("paid", "succeeded", 3100)
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


def test_a_period_billed_at_its_end_is_charged_when_the_cancellation_falls_on_that_end(brt, clock):
    """Cancelling at the period's end used to abort that period's run, billed at the same end:
    the customer had the whole last period free."""
    seeded = _arrears_cancelled_at_period_end(brt, clock)
    hourly(brt)
    drain(brt)
    _billed_once_then_canceled(brt, seeded)


def test_a_served_period_is_charged_after_the_cancellation_job_ended_the_subscription(brt, clock):
    """The hourly cron starts the cancellation and the billing runs side by side; this is the
    order where the cancellation comes first."""
    from flowjobs.billing.cancel import cancel_immediately

    seeded = _arrears_cancelled_at_period_end(brt, clock)
    with brt.billing.unit() as s:
        assert cancel_immediately(brt.billing, s, s.get(Subscription, seeded.subscription_id))
    assert [r.status for r in runs_of(brt, seeded.subscription_id)] == ["scheduled"]
    hourly(brt)
    drain(brt)
    _billed_once_then_canceled(brt, seeded)


@pytest.mark.parametrize("first", ["the billing run", "the cancellation"])
def test_a_declined_last_period_billed_at_its_end_is_retried_after_the_cancellation(
    brt, clock, first
):
    """Either job may run first at the period's end; both orders end alike. (Billing first, the
    decline met a subscription still `cancellation_scheduled` with no payment yet: a failed
    first payment, so it was canceled for non-payment and the period never retried.)"""
    from flowjobs.billing.cancel import cancel_immediately, schedule_cancellation

    seeded = seed(brt, unit_price=3100, arrears=True, card=DECLINING)
    with brt.billing.unit() as s:
        end = schedule_cancellation(brt.billing, s, s.get(Subscription, seeded.subscription_id))
    at(clock, end + timedelta(minutes=1))
    if first == "the billing run":
        with brt.billing.unit() as s:  # its job alone: the hourly cron has not started the other
            brt.billing.queue_billing_run(s, seeded.billing_run_id)
        drain(brt)
        [run] = runs_of(brt, seeded.subscription_id)[:1]
        assert run.status == "failed"
        sub = get(brt, Subscription, seeded.subscription_id)
        assert sub.status == "cancellation_scheduled"
    else:
        with brt.billing.unit() as s:
            cancel_immediately(brt.billing, s, s.get(Subscription, seeded.subscription_id))
    hourly(brt)
    drain(brt)
    sub = get(brt, Subscription, seeded.subscription_id)
    assert sub.status == "canceled"
    first, retry = runs_of(brt, sub.id)
    assert (first.status, retry.status, retry.attempt_number) == ("failed", "scheduled", 2)
    [period] = periods_of(brt, sub.id)
    assert period.status == "past_due"  # owed, not forgiven by the cancellation
    tasks = [r["task"] for r in brt.store.list_runs(limit=500)]
    assert tasks.count("send-customer-payment-failed-notification") == 1


def test_cancelling_now_in_the_middle_of_a_period_billed_at_its_end_charges_nothing(brt, clock):
    """As upstream: the unfinished period is closed at once and not billed (docs/billing.md)."""
    from flowjobs.billing.cancel import cancel_immediately

    seeded = seed(brt, unit_price=3100, arrears=True)
    at(clock, utc_from_ms(brt.clock.now_ms()) + timedelta(days=3))
    with brt.billing.unit() as s:
        assert cancel_immediately(brt.billing, s, s.get(Subscription, seeded.subscription_id))
    hourly(brt)
    drain(brt)
    assert [r.status for r in runs_of(brt, seeded.subscription_id)] == ["aborted"]
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {}


def test_stale_payment_whose_charge_was_never_recorded_is_settled_not_failed(brt, clock):
    from flowjobs.billing.runs import _prepare, record_intent

    seeded = seed(brt)
    charge = _prepare(
        brt.billing, seeded.billing_run_id, "run_dead_worker"
    )  # claimed, then "crashed"
    gateway = brt.billing.gateway
    intent = gateway.create_payment_intent(
        livemode=False,
        amount=charge.amount,
        currency=charge.currency,
        customer=charge.customer,
        payment_method=charge.payment_method,
        metadata=charge.metadata,
        idempotency_key=charge.idempotency_key,
    )
    assert (
        record_intent(brt.billing, charge, intent.payment_intent_id, "run_dead_worker")
        == intent.payment_intent_id
    )
    gateway.confirm_payment_intent(
        False,
        intent.payment_intent_id,
        idempotency_key=charge.confirm_key,
        amount=charge.amount,
        currency=charge.currency,
    )  # ... after Stripe had charged
    clock.advance(7 * 3600)
    run = brt.trigger("fail-stale-payments", {"timestamp": iso(clock.now_ms())})
    drain(brt)

    result = brt.store.get_run(run.id)
    assert result["status"] == "completed", result
    payment = _payment_of(brt, seeded.billing_run_id)
    assert payment.status == "succeeded"
    assert get(brt, BillingRun, seeded.billing_run_id).status == "succeeded"
    assert get(brt, Invoice, payment.invoice_id).status == "paid"
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


def test_stale_payment_without_stripe_trace_fails_with_payment_timeout(brt, clock):
    seeded = seed(brt)
    manual = standalone_payment(
        brt,
        customer_id=seeded.customer_id,
        organization_id=seeded.org_id,
        number="MANUAL-1",
        amount=500,
        status="processing",
    )
    clock.advance(5 * 3600)
    brt.trigger("fail-stale-payments", {"timestamp": iso(clock.now_ms())})
    drain(brt)
    with brt.billing.unit() as s:
        assert (
            s.exec(select(Payment.status).where(Payment.id == manual.id)).one() == "processing"
        )  # < 6 h
    clock.advance(2 * 3600)
    brt.trigger("fail-stale-payments", {"timestamp": iso(clock.now_ms())})
    drain(brt)
    with brt.billing.unit() as s:
        payment = s.exec(select(Payment).where(Payment.id == manual.id)).one()
    assert (payment.status, payment.failure_code) == ("failed", "payment_timeout")
    assert payment.failure_message == "Payment timed out after 6 hours in pending state"


def _payment_of(rt, billing_run_id):
    with rt.billing.unit() as s:
        return s.exec(select(Payment).where(Payment.billing_run_id == billing_run_id)).one()


def test_hourly_cron_fans_out_in_pages_with_slot_keys(make_runtime, localstripe_url, clock):
    rt = make_runtime(billing={"fan_out_page": 2}, **stripe_sections(localstripe_url))
    seeded = [seed(rt, unit_price=100 * (i + 1)) for i in range(5)]
    cron = hourly(rt)
    drain(rt)

    assert all(get(rt, BillingRun, s.billing_run_id).status == "succeeded" for s in seeded)
    children = {r["task"]: r for r in rt.store.list_runs(parent_id=cron.id, limit=50)}
    slot = iso(clock.now_ms())
    assert {task: r["idempotency_key"] for task, r in children.items()} == {
        task: f"{task}:{slot}"
        for task in (
            "attempt-billing-runs",
            "attempt-cancel-scheduled-subscriptions",
            "attempt-transition-billing-periods",
            "fail-stale-payments",
        )
    }
    fan_out = children["attempt-billing-runs"]
    assert '"testmode": 5' in fan_out["result"]
    per_run = rt.store.list_runs(parent_id=fan_out["id"], limit=50)
    assert sorted(r["idempotency_key"] for r in per_run) == sorted(
        f"attempt-billing-run:{s.billing_run_id}" for s in seeded
    )

    again = hourly(rt)  # the same slot fired twice (two schedulers): its children already exist
    drain(rt)
    assert {r["id"] for r in rt.store.list_runs(parent_id=again.id, limit=50)} == set()


def test_hourly_cron_purges_unfinished_checkout_sessions_older_than_14_days(brt, clock):
    from flowjobs import ids
    from flowjobs.billing.models import CheckoutSession, FeeCalculation

    seeded = seed(brt)
    now = utc_from_ms(clock.now_ms())
    sessions = {}
    with brt.billing.unit() as s:
        for label, age_days, status in [
            ("old-open", 15, "open"),
            ("old-expired", 20, "expired"),
            ("old-succeeded", 30, "succeeded"),
            ("old-pending", 30, "pending"),
            ("young-open", 13, "open"),
        ]:
            row = CheckoutSession(
                id=ids.new_id("chckt_session"),
                status=status,
                organization_id=seeded.org_id,
                created_at=now - timedelta(days=age_days),
                updated_at=now,
            )
            s.add(row)
            s.add(
                FeeCalculation(
                    id=ids.new_id("feec"),
                    organization_id=seeded.org_id,
                    checkout_session_id=row.id,
                    payment_method_type="card",
                    base_amount=100,
                    pretax_total=100,
                    tax_amount_fixed=0,
                    flowglad_fee_percentage="0.65",
                    mor_surcharge_percentage="0",
                    international_fee_percentage="0",
                    currency="USD",
                    type="checkout_session_payment",
                )
            )
            sessions[label] = row.id
    cron = hourly(brt)
    drain(brt)
    assert '"purgedCheckoutSessions": 2' in brt.store.get_run(cron.id)["result"]
    with brt.billing.unit() as s:
        left = set(s.exec(select(CheckoutSession.id)))
        fees_left = set(
            s.exec(
                select(FeeCalculation.checkout_session_id).where(
                    FeeCalculation.checkout_session_id != None
                )
            )
        )
    kept = {sessions[k] for k in ("old-succeeded", "old-pending", "young-open")}
    assert left == kept and fees_left == kept


@pytest.mark.parametrize(
    ("duration", "uses", "percent", "charged"),
    [
        ("once", None, 25, [1500, 2000, 2000]),
        ("number_of_payments", 2, 25, [1500, 1500, 2000]),
        ("forever", None, 25, [1500, 1500, 1500]),
        ("once", None, 100, [0, 2000, 2000]),  # the first period is free: nothing charged
    ],
)
def test_a_discount_is_used_up_by_the_periods_it_paid_for(
    brt, clock, duration, uses, percent, charged
):
    """`once` takes one period off, `number_of_payments` N periods, `forever` every period; a
    period the discount paid in full (nothing charged) counts as a use. Upstream advanced
    redemptions on checkout payments only, so a one-month coupon discounted every month."""
    from flowjobs.billing import setup
    from flowjobs.billing.models import DiscountRedemption

    start = utc(2027, 1, 10, 10)
    at(clock, start)
    seeded = seed(brt, unit_price=2000)
    with brt.billing.unit() as s:
        sub = s.get(Subscription, seeded.subscription_id)
        redemption_id = setup.discount(
            s, sub, amount=percent, duration=duration, number_of_payments=uses
        ).id
    hourly(brt)
    drain(brt)
    for month in (2, 3):  # two rollovers, each billing its new period
        at(clock, utc(2027, month, 10, 10, 30))
        hourly(brt, last=utc(2027, month, 10, 9, 30))
        drain(brt)
    runs = runs_of(brt, seeded.subscription_id)
    assert [r.status for r in runs] == ["succeeded"] * 3
    with brt.billing.unit() as s:
        paid = [
            (s.exec(select(Payment.amount).where(Payment.billing_run_id == r.id)).first() or 0)
            for r in runs
        ]
        redeemed = s.get(DiscountRedemption, redemption_id).fully_redeemed
    assert paid == charged
    assert redeemed is (duration != "forever")
    expected = {"succeeded": sum(1 for amount in charged if amount)}
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == expected


def test_a_subscription_billed_at_period_end_renews_after_its_run_completed_the_period(brt, clock):
    """The period's run, due at its end, ran before the hourly rollover saw the period: paid,
    it was `completed`, the rollover skipped completed periods, and the subscription stopped
    renewing after its second period."""
    at(clock, utc(2027, 1, 15, 10, 17))
    seeded = seed(brt, unit_price=1200, arrears=True)
    for month in (2, 3, 4):
        end = utc(2027, month, 15, 10, 17)
        at(clock, end + timedelta(minutes=1))
        drain(brt)  # the worker runs the run due at the period's end first
        at(clock, utc(2027, month, 15, 11))
        hourly(brt, last=utc(2027, month, 15, 10))
        drain(brt)
    periods = periods_of(brt, seeded.subscription_id)
    assert [p.end_date for p in periods] == [utc(2027, m, 15, 10, 17) for m in (2, 3, 4, 5)]
    assert [p.status for p in periods] == ["completed", "completed", "completed", "active"]
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 3}


def test_after_the_hourly_cron_was_down_for_months_every_missed_period_is_opened_and_billed(
    brt, clock
):
    """A rollover used to open one period per ended period; one opened after its own end was
    never in a later window, so after an outage longer than a period the subscription stopped
    renewing. Each missed period is opened in turn, its run charged once."""
    at(clock, utc(2027, 1, 15, 10, 5))
    seeded = seed(brt, unit_price=1200)
    hourly(brt)
    drain(brt)  # period 1 paid
    at(clock, utc(2027, 4, 20, 9, 0, 5))  # the cron down from Jan 15 12:00 to Apr 20
    hourly(brt, last=utc(2027, 1, 15, 12))
    drain(brt)
    periods = periods_of(brt, seeded.subscription_id)
    assert [p.start_date for p in periods] == [utc(2027, m, 15, 10, 5) for m in (1, 2, 3, 4)]
    assert [p.status for p in periods] == ["completed"] * 3 + ["active"]
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 4}
    sub = get(brt, Subscription, seeded.subscription_id)
    assert (sub.status, sub.current_billing_period_end) == ("active", utc(2027, 5, 15, 10, 5))
    at(clock, utc(2027, 4, 20, 10, 0, 5))
    hourly(brt, last=utc(2027, 4, 20, 9, 0, 5))  # the next slot: nothing more
    drain(brt)
    assert len(periods_of(brt, seeded.subscription_id)) == 4
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 4}


def _paid_then_the_cron_went_down(brt, clock, arrears: bool):
    """A subscription renewing on the 15th, its first period paid; the hourly cron down from
    Jan 15 12:00 (workers up)."""
    at(clock, utc(2027, 1, 15, 10, 5))
    seeded = seed(brt, unit_price=1200, arrears=arrears)
    if arrears:
        with brt.billing.unit() as s:  # its run's job, as the rollover queues it: at the end
            run = s.get(BillingRun, seeded.billing_run_id)
            brt.billing.queue_billing_run(s, run.id, run.scheduled_for)
    hourly(brt)
    drain(brt)
    return seeded


def _renewals(month: int) -> list:
    return [utc(2027, m, 15, 10, 5) for m in range(1, month + 1)]


@pytest.mark.parametrize("arrears", [False, True], ids=["billed at start", "billed at end"])
@pytest.mark.parametrize("back", ["before", "after"])
def test_a_cancellation_scheduled_while_the_cron_was_down_bills_every_period_served(
    brt, clock, arrears, back
):
    """Cancelled "at period end" on Mar 20 while the hourly cron had been down since Jan 15:
    the stored period (Jan 15 - Feb 15) was stale, so the cancellation was dated Feb 15 and the
    periods served until then (Feb 15 - Apr 15) were never opened nor billed. The periods the
    subscription served are opened first; the cancellation is dated the end of the period in
    which it was asked for (Apr 15), and each period is billed once, whether the cron comes back
    before that date or after it."""
    from flowjobs.billing.cancel import cancel

    seeded = _paid_then_the_cron_went_down(brt, clock, arrears)
    at(clock, utc(2027, 3, 20, 9, 30))
    result = cancel(brt.billing, seeded.subscription_id)
    assert (result["status"], result["cancelScheduledAt"]) == (
        "cancellation_scheduled",
        "2027-04-15T10:05:00.000Z",
    )
    drain(brt)
    if back == "before":  # the cron is back on Apr 1, the cancellation still ahead
        at(clock, utc(2027, 4, 1, 0, 0, 5))
        hourly(brt, last=utc(2027, 1, 15, 12))
        drain(brt)
        sub = get(brt, Subscription, seeded.subscription_id)
        assert sub.status == "cancellation_scheduled"
        at(clock, utc(2027, 4, 15, 11, 0, 5))
        hourly(brt, last=utc(2027, 4, 15, 10))
    else:  # back on Apr 20, after the cancellation's date
        at(clock, utc(2027, 4, 20, 9, 0, 5))
        hourly(brt, last=utc(2027, 1, 15, 12))
    drain(brt)
    sub = get(brt, Subscription, seeded.subscription_id)
    assert sub.status == "canceled" and sub.cancel_scheduled_at == utc(2027, 4, 15, 10, 5)
    periods = periods_of(brt, seeded.subscription_id)
    assert [p.start_date for p in periods] == _renewals(3)  # no period after the cancellation
    assert [p.status for p in periods] == ["completed"] * 3
    charges = brt.billing.gateway.count_charges(False, seeded.stripe_customer)
    assert charges == {"succeeded": 3}  # Jan, Feb and Mar, once each
    tasks = [r["task"] for r in brt.store.list_runs(limit=1000)]
    assert tasks.count("send-customer-subscription-canceled-notification") == 1


@pytest.mark.parametrize("arrears", [False, True], ids=["billed at start", "billed at end"])
def test_cancelling_now_while_the_cron_was_down_bills_the_periods_served_in_full(
    brt, clock, arrears
):
    """`billing cancel --now` on Mar 20, the hourly cron down since Jan 15: the periods served
    in full before it (Feb 15 - Mar 15) are owed and billed once; the period it cuts short is
    not, as for any cancellation at once (docs/billing.md)."""
    from flowjobs.billing.cancel import cancel

    seeded = _paid_then_the_cron_went_down(brt, clock, arrears)
    at(clock, utc(2027, 3, 20, 9, 30))
    assert cancel(brt.billing, seeded.subscription_id, now=True)["status"] == "canceled"
    drain(brt)
    at(clock, utc(2027, 4, 20, 9, 0, 5))  # the cron back: nothing more
    hourly(brt, last=utc(2027, 1, 15, 12))
    drain(brt)
    periods = periods_of(brt, seeded.subscription_id)
    assert [p.start_date for p in periods] == _renewals(2)  # none for the days cut short
    assert [p.status for p in periods] == ["completed"] * 2
    charges = brt.billing.gateway.count_charges(False, seeded.stripe_customer)
    assert charges == {"succeeded": 2}  # Jan and Feb; not the month cut short
    assert [r.status for r in runs_of(brt, seeded.subscription_id)] == ["succeeded"] * 2


def test_cancelling_now_without_a_card_cancels_the_past_due_periods(brt, clock):
    """§4.2: a cancellation at once cancels the `past_due` periods. A period is kept past it
    only for a billing run still to charge it; one without a card has none, and was left
    `past_due` for good."""
    from flowjobs.billing.cancel import cancel

    at(clock, utc(2027, 1, 15, 10, 5))
    seeded = seed(brt, unit_price=1200, card=None)
    for month in (2, 3):  # the cron up: each renewal opens a period with nothing to charge it
        at(clock, utc(2027, month, 15, 11, 0, 5))
        hourly(brt, last=utc(2027, month, 15, 10))
        drain(brt)
    statuses = [p.status for p in periods_of(brt, seeded.subscription_id)]
    assert statuses == ["past_due", "past_due", "active"]
    at(clock, utc(2027, 3, 20))
    assert cancel(brt.billing, seeded.subscription_id, now=True)["status"] == "canceled"
    periods = periods_of(brt, seeded.subscription_id)
    assert [p.status for p in periods] == ["canceled", "canceled", "completed"]
    assert periods[-1].end_date == utc(2027, 3, 20)


def test_an_ending_within_the_hour_after_a_renewal_opens_no_sliver_of_a_period(brt, clock):
    """In the hour between a period's end and the hourly rollover, a cancellation at once (here:
    a declined first payment, billed at the period's end) opened the next period only to cut
    it to seconds, with its items and an aborted run. Only periods served in full are opened
    by a cancellation at once."""
    seeded = seed(brt, unit_price=3100, arrears=True, card=DECLINING)
    end = periods_of(brt, seeded.subscription_id)[0].end_date
    at(clock, end + timedelta(seconds=30))
    with brt.billing.unit() as s:  # its job, due at the end; the rollover not run yet
        brt.billing.queue_billing_run(s, seeded.billing_run_id)
    drain(brt)
    sub = get(brt, Subscription, seeded.subscription_id)
    assert (sub.status, sub.cancellation_reason) == ("canceled", "non_payment")
    [period] = periods_of(brt, seeded.subscription_id)
    assert period.end_date == end
    assert [r.status for r in runs_of(brt, sub.id)] == ["failed"]


def test_a_declined_period_still_owed_after_the_end_can_be_retried_by_hand(brt, clock):
    """`billing retry` refused every run of a canceled subscription ("its periods are no longer
    billed"), even a period served in full that the cancellation kept as owed."""
    from flowjobs.billing.cancel import cancel_immediately, schedule_cancellation
    from flowjobs.billing.retry import retry_billing_run

    seeded = seed(brt, unit_price=3100, arrears=True, card=DECLINING)
    with brt.billing.unit() as s:
        end = schedule_cancellation(brt.billing, s, s.get(Subscription, seeded.subscription_id))
    at(clock, end + timedelta(minutes=1))
    with brt.billing.unit() as s:
        cancel_immediately(brt.billing, s, s.get(Subscription, seeded.subscription_id))
    hourly(brt)
    drain(brt)
    first, retry = runs_of(brt, seeded.subscription_id)
    assert (first.status, retry.status) == ("failed", "scheduled")
    retried = retry_billing_run(brt.billing, first.id)
    assert (retried.billing_run, retried.created) == (retry.id, False)  # charged now


def test_two_rollovers_of_a_paid_period_at_once_open_one_next_period(brt, clock, monkeypatch):
    """A period paid at its end is `completed` before its rollover; two rollovers of it at once
    (the hourly child and an operator's trigger) wrote nothing that made one wait for the
    other, and on PostgreSQL both opened a next period, each with its charge. The subscription
    row is locked first."""
    import threading

    from flowjobs.billing import repo
    from flowjobs.billing.rollover import transition_billing_period

    at(clock, utc(2027, 1, 15, 10, 17))
    seeded = seed(brt, unit_price=1200, arrears=True)
    with brt.billing.unit() as s:  # its run's job, as the rollover queues it: due at the end
        run = s.get(BillingRun, seeded.billing_run_id)
        brt.billing.queue_billing_run(s, run.id, run.scheduled_for)
    at(clock, utc(2027, 2, 15, 10, 20))
    drain(brt)  # the period's run, due at its end: paid, the period `completed`
    assert periods_of(brt, seeded.subscription_id)[0].status == "completed"
    arrived, both = [], threading.Event()
    exists = repo.later_period_exists

    def held(s, subscription_id, after):  # hold the first until the second gets this far
        found = exists(s, subscription_id, after)
        arrived.append(found)
        if len(arrived) == 2:
            both.set()
        both.wait(1.0)  # the second cannot arrive while the first holds the row
        return found

    monkeypatch.setattr(repo, "later_period_exists", held)
    at(clock, utc(2027, 2, 15, 11))
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(transition_billing_period(brt.billing, seeded.period_id))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted("opened period" in r.action for r in results) == [False, True], results
    assert len(periods_of(brt, seeded.subscription_id)) == 2


@pytest.fixture
def pg_brt(pg_template, clock, tmp_path, localstripe_url):
    """A billing runtime on PostgreSQL only: the race below needs row locks that SQLite's one
    writer at a time never lets two transactions hold."""
    from flowjobs.runtime import Runtime
    from tests.conftest import make_settings, new_pg_database

    rt = Runtime(
        make_settings(new_pg_database(pg_template), tmp_path, **stripe_sections(localstripe_url)),
        clock=clock,
    )
    yield rt
    rt.close()


def test_a_rollover_closing_a_period_while_its_run_pays_it_leaves_it_completed(
    pg_brt, clock, monkeypatch
):
    """The rollover read a period billed at its end (unpaid: `past_due`), its run's outcome
    then paid it and made it `completed`, and the rollover wrote `past_due` over that: a paid
    period left owing. The rollover now locks the period and reads it again before closing it,
    so the outcome waits for it and has the last word."""
    import threading

    import psycopg

    from flowjobs.billing import outcomes, repo
    from flowjobs.billing.rollover import transition_billing_period

    brt = pg_brt
    seeded = seed(brt, unit_price=3100, arrears=True)
    end = periods_of(brt, seeded.subscription_id)[0].end_date
    at(clock, end + timedelta(minutes=1))
    charged, read, release = threading.Event(), threading.Event(), threading.Event()
    apply, settled = outcomes.apply_charge_result, repo.net_settled

    def outcome_after_the_rollover_read(b, billing_run_id, result):
        charged.set()  # Stripe has charged; the outcome waits for the rollover to read
        assert read.wait(30)
        return apply(b, billing_run_id, result)

    def rollover_pauses_after_reading(s, billing_period_id, net=True):
        value = settled(s, billing_period_id, net=net)
        if threading.current_thread().name == "rollover":
            read.set()
            assert release.wait(30)
        return value

    monkeypatch.setattr(outcomes, "apply_charge_result", outcome_after_the_rollover_read)
    monkeypatch.setattr(repo, "net_settled", rollover_pauses_after_reading)

    def pay():
        with brt.billing.unit() as s:
            brt.billing.queue_billing_run(s, seeded.billing_run_id)
        drain(brt)

    payer = threading.Thread(target=pay, name="payer")
    payer.start()
    assert charged.wait(30)
    rollover = threading.Thread(
        target=transition_billing_period, args=(brt.billing, seeded.period_id), name="rollover"
    )
    rollover.start()
    assert read.wait(30)
    url = brt.settings.database.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as watcher:  # the outcome done, or waiting
        wait_until(
            lambda: (
                not payer.is_alive()
                or watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                ).fetchone()
                is not None
            ),
            message="the outcome to finish or wait for the rollover",
        )
    release.set()
    rollover.join(30)
    payer.join(60)
    assert not rollover.is_alive() and not payer.is_alive()
    period = periods_of(brt, seeded.subscription_id)[0]
    assert period.status == "completed"  # paid: not owing
    assert [r.status for r in runs_of(brt, seeded.subscription_id)][0] == "succeeded"
