"""Billing jobs end to end: SQLite and PostgreSQL, Stripe through the SDK against localstripe."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

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


def intent_events(rt, intent_id: str):
    """A seeded run whose PaymentIntent `intent_id` is recorded (as the run does before it
    confirms), and `event(status, created, charge_status=None)` applying a webhook's outcome
    for it: (seeded, event)."""
    from flowjobs.adapters.stripe_gateway import ChargeResult
    from flowjobs.billing.outcomes import apply_charge_result
    from flowjobs.billing.runs import _prepare, record_intent

    seeded = seed(rt)
    charge = _prepare(rt.billing, seeded.billing_run_id, "run_x")
    assert record_intent(rt.billing, charge, intent_id, "run_x")

    def event(status, created, charge_status=None):
        charge_id = f"ch_{intent_id}" if charge_status else None
        result = ChargeResult(status, intent_id, charge_id, charge_status, 2500, "USD", created)
        return apply_charge_result(rt.billing, seeded.billing_run_id, result, created)

    return seeded, event


def test_outcomes_out_of_order_never_regress_and_a_canceled_intent_aborts(brt):
    seeded, event = intent_events(brt, "pi_ooo")

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


def test_an_event_of_the_same_second_settles_the_run_but_does_not_move_it_back(brt):
    """Stripe's `created` is whole seconds: `succeeded` in the second of `requires_action` was
    dropped as "at least as new", and the run waited hours for the stale-payment job."""
    seeded, event = intent_events(brt, "pi_same")

    assert event("requires_action", 200).action != "skipped"
    assert event("processing", 200).action == "skipped"  # same second, settles nothing
    assert event("succeeded", 200, "succeeded").status == "succeeded"
    assert _payment(brt, seeded.billing_run_id).status == "succeeded"


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


def test_a_late_cancel_of_an_earlier_attempts_intent_leaves_the_retried_run_alone(
    brt, localstripe_url
):
    """Attempt 1 recorded a PaymentIntent and died before confirming; the run was put back and
    its intent canceled. Attempt 2 has made its payment but not yet its PaymentIntent when the
    old intent's `payment_intent.canceled` arrives: it is skipped (it once aborted the run,
    left the subscription past_due and the period never billed), and attempt 2 charges."""
    from flowjobs.adapters.stripe_gateway import ChargeResult
    from flowjobs.billing.models import PaymentMethod
    from flowjobs.billing.outcomes import apply_charge_result
    from flowjobs.billing.runs import (
        _prepare,
        execute_billing_run,
        record_intent,
        settle_failed_job,
    )
    from tests.webhook_helpers import stripe_client

    seeded = seed(brt)
    first = _prepare(brt.billing, seeded.billing_run_id, "job_a")
    method = get(brt, PaymentMethod, seeded.method_id)
    old = stripe_client(localstripe_url).v1.payment_intents.create(
        params={
            "amount": first.amount,
            "currency": first.currency.lower(),
            "customer": seeded.stripe_customer,
            "payment_method": method.stripe_payment_method_id,
            "metadata": first.metadata,
        }
    )
    assert record_intent(brt.billing, first, old.id, "job_a") == old.id
    assert settle_failed_job(brt.billing, seeded.billing_run_id, "job_a", "boom").action == (
        "requeued"
    )
    second = _prepare(brt.billing, seeded.billing_run_id, "job_b")
    assert second.payment_id != first.payment_id and second.payment_intent_id is None

    late = ChargeResult("canceled", old.id, None, None, first.amount, first.currency, old.created)
    report = apply_charge_result(
        brt.billing, seeded.billing_run_id, late, event_created=old.created + 60
    )
    assert report.action == "skipped" and "none recorded yet" in report.detail
    assert get(brt, BillingRun, seeded.billing_run_id).status == "started"  # in progress
    assert get(brt, Subscription, seeded.subscription_id).status == "active"
    assert get(brt, Payment, second.payment_id).status == "processing"

    assert execute_billing_run(brt.billing, seeded.billing_run_id, "job_b").action == "charged"
    assert get(brt, BillingRun, seeded.billing_run_id).status == "succeeded"
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


def test_charge_failed_leaves_a_billing_runs_payment_to_its_payment_intents_outcome(
    brt, localstripe_url
):
    """`charge.failed` arriving first for a billing run's declined charge changes nothing: the
    run's outcome (here its `payment_intent.payment_failed`) fails the payment and sends the
    one payment-failed email, with what it knows of the retry. (Upstream's handler failed the
    payment and sent its own email first — one saying there is no automatic retry, sharing the
    run's key so the right one was dropped — and a payment no longer `processing` made a
    resumed attempt skip the run.)"""
    from flowjobs.webhooks import stripe_handlers
    from tests.webhook_helpers import charged_but_unrecorded, envelope, event_for

    seeded, failed = charged_but_unrecorded(brt, card=DECLINING)
    pi_event = event_for(localstripe_url, "payment_intent.payment_failed", failed.payment_intent_id)
    charge = pi_event["data"]["object"]["latest_charge"]
    assert isinstance(charge, dict) and charge["status"] == "failed"
    result = stripe_handlers.charge_failed(brt.billing, envelope("evt_cf", "charge.failed", charge))
    assert result["result"] == "ignored" and seeded.billing_run_id in result["detail"]
    [payment] = [p for p in _payments(brt) if p.billing_run_id == seeded.billing_run_id]
    assert payment.status == "processing"
    assert brt.store.list_runs(task="send-customer-payment-failed-notification") == []

    outcome = stripe_handlers.payment_intent(brt.billing, pi_event)
    assert outcome["action"] == "declined", outcome
    assert get(brt, Payment, payment.id).status == "failed"
    assert len(brt.store.list_runs(task="send-customer-payment-failed-notification")) == 1


def _payments(rt) -> list[Payment]:
    from sqlmodel import select

    with rt.billing.unit() as s:
        return list(s.exec(select(Payment)))


def test_a_subscription_to_a_price_in_another_currency_is_refused(rt):
    """Its billing runs charge in the organisation's currency: a EUR price's 2500 would have
    been charged as 25.00 USD (a checkout session naming such a price ends its run so)."""
    from flowjobs.billing import setup
    from flowjobs.billing.repo import BillingError

    with rt.billing.unit() as s:
        org = setup.organization(s, "Acme Analytics", currency="USD")
        cust = setup.customer(s, org, email="ada@example.com", name="Ada Lovelace")
        price = setup.plan(s, org, "Pro", 2500)
        price.currency = "EUR"
        with pytest.raises(BillingError) as refused:
            setup.subscription(s, cust, price, None, start=s.info["now"])
        assert str(refused.value) == (
            f"price {price.id} is in EUR, and organization {org.id} bills in USD: subscribe "
            "the customer to a price in USD"
        )
        s.rollback()
    with rt.billing.unit() as s:
        assert s.exec(select(Subscription)).all() == []


def test_two_events_of_one_run_at_once_leave_the_newer_state(brt, monkeypatch):
    """`processing` (older) and `succeeded` handled at the same moment: the run's row is locked
    first, so they apply one after the other. On PostgreSQL the older one, committing last,
    rolled the run back to awaiting confirmation after it had succeeded."""
    import threading

    from flowjobs.adapters.stripe_gateway import ChargeResult
    from flowjobs.billing import outcomes
    from flowjobs.billing.runs import _prepare, record_intent

    seeded = seed(brt)
    charge = _prepare(brt.billing, seeded.billing_run_id, "run_x")
    assert record_intent(brt.billing, charge, "pi_race", "run_x")
    arrived, newer_done = threading.Event(), threading.Event()
    stale = outcomes._stale

    def held(run, event_created, final=False):
        if final:  # the newer event: waits (at most 1 s) for the older to get this far too
            arrived.wait(1.0)
        else:  # the older event: waits (at most 1 s) for the newer to be written
            arrived.set()
            newer_done.wait(1.0)
        return stale(run, event_created, final)

    monkeypatch.setattr(outcomes, "_stale", held)

    def apply(status, created, charge_status=None):
        result = ChargeResult(
            status,
            "pi_race",
            "ch_race" if charge_status else None,
            charge_status,
            2500,
            "USD",
            created,
        )
        outcomes.apply_charge_result(
            brt.billing, seeded.billing_run_id, result, event_created=created
        )
        if status == "succeeded":
            newer_done.set()

    threads = [
        threading.Thread(target=apply, args=("processing", 100)),
        threading.Thread(target=apply, args=("succeeded", 105, "succeeded")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    run = get(brt, BillingRun, seeded.billing_run_id)
    assert run.status == "succeeded"
    assert _payment(brt, seeded.billing_run_id).status == "succeeded"


def test_an_uncancel_does_not_restore_a_run_whose_payment_intent_was_canceled(brt):
    """The run of the current period ended `aborted` by its canceled PaymentIntent — not by
    the cancellation — so un-canceling restores nothing, and charges nothing."""
    from flowjobs.billing.cancel import cancel, uncancel_subscription

    seeded, event = intent_events(brt, "pi_gone")
    assert event("canceled", 300).status == "aborted"
    assert cancel(brt.billing, seeded.subscription_id)["status"] == "cancellation_scheduled"
    assert uncancel_subscription(brt.billing, seeded.subscription_id)["billingRuns"] == []
    drain(brt)
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {}
