"""Billing jobs end to end: SQLite and PostgreSQL, Stripe through the SDK against localstripe."""

from __future__ import annotations

import json

import pytest

from flowjobs.billing.models import BillingPeriod, BillingRun, Invoice, Payment, Subscription
from flowjobs.core.clock import iso
from tests.billing_helpers import DECLINING, drain, get, runs_of, seed, stripe_sections


@pytest.fixture
def brt(make_runtime, localstripe_url):
    return make_runtime(**stripe_sections(localstripe_url))


def hourly(rt):
    now = rt.clock.now_ms()
    return rt.trigger("hourly-cron", {"timestamp": iso(now), "scheduleId": "hourly-cron"})


def child_runs(rt, task: str):
    return [r for r in rt.store.list_runs(limit=1000) if r["task"] == task]


def test_due_billing_run_charges_once_and_settles_everything(brt):
    seeded = seed(brt, unit_price=2500)
    hourly(brt)
    drain(brt)

    run = get(brt, BillingRun, seeded.billing_run_id)
    assert run.status == "succeeded"
    assert run.stripe_payment_intent_id.startswith("pi_")
    payment = get(brt, Payment, brt.billing and _payment_id(brt, run.id))
    assert (payment.status, payment.amount, payment.currency) == ("succeeded", 2500, "USD")
    assert payment.stripe_charge_id.startswith("ch_")
    invoice = get(brt, Invoice, payment.invoice_id)
    assert invoice.status == "paid" and invoice.subtotal == 2500 and invoice.tax_amount == 0
    assert invoice.invoice_number.endswith("-00000")
    assert get(brt, Subscription, seeded.subscription_id).status == "active"
    assert get(brt, BillingPeriod, seeded.period_id).status == "active"
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}
    for task in (
        "generate-invoice-pdf",
        "send-customer-payment-succeeded-notification",
        "send-organization-payment-succeeded-notification",
    ):
        assert len(child_runs(brt, task)) == 1, task


def _payment_id(rt, billing_run_id: str) -> str:
    from sqlmodel import select

    with rt.billing.unit() as s:
        return s.exec(select(Payment.id).where(Payment.billing_run_id == billing_run_id)).one()


def test_first_payment_declined_cancels_the_subscription(brt):
    seeded = seed(brt, card=DECLINING)
    hourly(brt)
    drain(brt)

    run = get(brt, BillingRun, seeded.billing_run_id)
    assert run.status == "failed"
    payment = get(brt, Payment, _payment_id(brt, run.id))
    assert (payment.status, payment.failure_code) == ("failed", "card_declined")
    sub = get(brt, Subscription, seeded.subscription_id)
    assert (sub.status, sub.cancellation_reason) == ("canceled", "non_payment")
    assert sub.canceled_at is not None
    assert [r.attempt_number for r in runs_of(brt, sub.id)] == [1]  # no retry after cancelling
    assert get(brt, Invoice, payment.invoice_id).status == "open"
    assert len(child_runs(brt, "send-customer-subscription-canceled-notification")) == 1
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"failed": 1}


def switch_to_card(rt, seeded, number: str) -> str:
    """Attach another card at Stripe and make it the subscription's default payment method."""
    from flowjobs.billing import setup
    from flowjobs.billing.models import Customer

    pm = rt.billing.gateway.attach_card(False, customer=seeded.stripe_customer, number=number)
    with rt.billing.unit() as s:
        method = setup.card(
            s, s.get(Customer, seeded.customer_id), stripe_payment_method_id=pm[0], last4=pm[1]
        )
        s.get(Subscription, seeded.subscription_id).default_payment_method_id = method.id
        return method.id


def test_dunning_ladder_retries_at_3_5_5_days_then_stops(brt, clock):
    from datetime import timedelta

    from flowjobs.billing.types import utc_from_ms

    seeded = seed(brt)
    hourly(brt)
    drain(brt)  # period 1 paid with a good card
    switch_to_card(brt, seeded, DECLINING)
    period_end = get(brt, BillingPeriod, seeded.period_id).end_date
    clock.set(int(period_end.timestamp() * 1000) + 60_000)
    hourly(brt)
    drain(brt)  # rollover: period 2 and its billing run, which is declined

    failed_at = utc_from_ms(clock.now_ms())
    for expected_wait in (3, 5, 5):
        runs = runs_of(brt, seeded.subscription_id)
        latest = runs[-1]
        assert runs[-2].status == "failed"
        assert latest.status == "scheduled"
        assert latest.scheduled_for == failed_at + timedelta(days=expected_wait)
        assert get(brt, Subscription, seeded.subscription_id).status == "past_due"
        clock.set(int(latest.scheduled_for.timestamp() * 1000))
        failed_at = latest.scheduled_for
        drain(brt)  # the retry's own delayed attempt-billing-run falls due

    runs = runs_of(brt, seeded.subscription_id)
    period2 = [r for r in runs if r.billing_period_id != seeded.period_id]
    assert [(r.attempt_number, r.status) for r in period2] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (4, "failed"),
    ]
    assert get(brt, Subscription, seeded.subscription_id).status == "past_due"
    failed_mails = child_runs(brt, "send-customer-payment-failed-notification")
    retry_dates = sorted(json.loads(r["payload"]).get("retryDate") is None for r in failed_mails)
    assert len(failed_mails) == 4 and retry_dates == [
        False,
        False,
        False,
        True,
    ]  # one mail per failure
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {
        "succeeded": 1,
        "failed": 4,
    }


def test_trial_ends_then_decline_goes_past_due_instead_of_cancelling(brt, clock):
    from datetime import timedelta

    from flowjobs.billing.types import utc_from_ms

    now = utc_from_ms(clock.now_ms())
    seeded = seed(brt, card=DECLINING, trial_end=now + timedelta(days=14))
    hourly(brt)
    drain(brt)
    trial_run = get(brt, BillingRun, seeded.billing_run_id)
    assert trial_run.status == "succeeded"  # $0 trial invoice: nothing to charge
    assert get(brt, Subscription, seeded.subscription_id).status == "trialing"

    clock.set(int((now + timedelta(days=14, minutes=1)).timestamp() * 1000))
    hourly(brt)
    drain(brt)
    sub = get(brt, Subscription, seeded.subscription_id)
    assert sub.status == "past_due"
    runs = runs_of(brt, sub.id)
    assert [r.status for r in runs if r.id != trial_run.id] == ["failed", "scheduled"]


def test_outcomes_out_of_order_never_regress_and_a_canceled_intent_aborts(brt):
    from flowjobs.adapters.stripe_gateway import ChargeResult
    from flowjobs.billing.outcomes import apply_charge_result
    from flowjobs.billing.runs import _prepare

    seeded = seed(brt)
    _prepare(brt.billing, seeded.billing_run_id, "run_x")

    def event(status, created, charge_status=None):
        result = ChargeResult(
            status,
            "pi_ooo",
            "ch_ooo" if charge_status else None,
            charge_status,
            2500,
            "USD",
            created,
        )
        return apply_charge_result(
            brt.billing, seeded.billing_run_id, result, event_created=created
        )

    assert event("processing", 200).status == "awaiting_payment_confirmation"
    invoice_id = _payment(brt, seeded.billing_run_id).invoice_id
    assert get(brt, Invoice, invoice_id).status == "awaiting_payment_confirmation"
    assert (
        event("requires_payment_method", 100, "failed").action == "skipped"
    )  # older than what we saw
    assert get(brt, BillingRun, seeded.billing_run_id).status == "awaiting_payment_confirmation"
    assert event("canceled", 300).status == "aborted"
    assert get(brt, Subscription, seeded.subscription_id).status == "past_due"
    assert _payment(brt, seeded.billing_run_id).status == "canceled"
    assert event("succeeded", 400, "succeeded").action == "skipped"  # aborted is final


def test_merchant_of_record_invoice_carries_tax_from_the_calculator(make_runtime, localstripe_url):
    rt = make_runtime(billing={"tax_calculator": "flat:10"}, **stripe_sections(localstripe_url))
    seeded = seed(
        rt, unit_price=2500, org_fields={"stripe_connect_contract_type": "merchant_of_record"}
    )
    platform = seed(rt, unit_price=2500)  # a platform organisation: never taxed
    hourly(rt)
    drain(rt)
    taxed = _payment(rt, seeded.billing_run_id)
    assert (taxed.amount, taxed.tax_amount, taxed.subtotal) == (2750, 250, 2500)
    invoice = get(rt, Invoice, taxed.invoice_id)
    assert (invoice.subtotal, invoice.tax_amount, invoice.status) == (2500, 250, "paid")
    assert _payment(rt, platform.billing_run_id).amount == 2500


def _payment(rt, billing_run_id):
    from sqlmodel import select

    with rt.billing.unit() as s:
        return s.exec(select(Payment).where(Payment.billing_run_id == billing_run_id)).one()
