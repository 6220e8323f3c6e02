"""Unknown charge outcomes are reconciled with Stripe by the PaymentIntent recorded before its
confirmation — even after Stripe forgot the idempotency keys (localstripe's cache cleared);
a billing run whose job failed for good is settled at once (`settle_failed_job`, the
`settle-billing-run` failure hook); `fail-stale-payments` settles or gives up every pending
state localstripe can produce. Both backends, localstripe over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from flowjobs.billing.models import BillingRun, Payment, Subscription
from flowjobs.billing.runs import _prepare, execute_billing_run, record_intent, settle_failed_job
from flowjobs.billing.types import utc_from_ms
from flowjobs.core.clock import iso
from tests.acceptance.faults.stripe_proxy import forget_idempotency_keys
from tests.billing_helpers import (
    DECLINING,
    drain,
    get,
    runs_of,
    seed,
    standalone_payment,
    stripe_sections,
)

THREE_DS = "4000002500003155"  # off-session confirmation → requires_action


@pytest.fixture
def brt(make_runtime, localstripe_url):
    return make_runtime(**stripe_sections(localstripe_url))


def payments_of(rt, billing_run_id):
    with rt.billing.unit() as s:
        return list(
            s.exec(
                select(Payment)
                .where(Payment.billing_run_id == billing_run_id)
                .order_by(Payment.created_at, Payment.status)
            )
        )


def created_and_recorded(rt, billing_run_id, job="run_lost"):
    """An attempt that claimed the run, created its PaymentIntent and recorded the id — then died."""
    charge = _prepare(rt.billing, billing_run_id, job)
    intent = rt.billing.gateway.create_payment_intent(
        livemode=False,
        amount=charge.amount,
        currency=charge.currency,
        customer=charge.customer,
        payment_method=charge.payment_method,
        metadata=charge.metadata,
        idempotency_key=charge.idempotency_key,
    )
    assert (
        record_intent(rt.billing, charge, intent.payment_intent_id, job) == intent.payment_intent_id
    )
    charge.payment_intent_id = intent.payment_intent_id
    return charge


def confirmed_unrecorded(rt, billing_run_id, job="run_lost"):
    """… and also sent the confirmation (Stripe charged), then died before recording the answer."""
    from flowjobs.billing.runs import _mark_confirm_sent

    charge = created_and_recorded(rt, billing_run_id, job)
    assert _mark_confirm_sent(rt.billing, charge, job)
    result = rt.billing.gateway.confirm_payment_intent(
        False,
        charge.payment_intent_id,
        idempotency_key=charge.confirm_key,
        amount=charge.amount,
        currency=charge.currency,
    )
    return charge, result


def intent_status(rt, intent_id):
    return rt.billing.gateway.retrieve_payment_intent(False, intent_id).status


def jobs(rt, task):
    return [r for r in rt.store.list_runs(limit=500) if r["task"] == task]


# -- (a) a retry after Stripe forgot the keys ------------------------------------------------------


def test_a_lost_answer_is_recorded_and_a_retry_after_the_keys_expired_charges_nothing_more(
    brt, localstripe_url
):
    seeded = seed(brt)
    charge, result = confirmed_unrecorded(brt, seeded.billing_run_id)
    assert result.status == "succeeded"
    forget_idempotency_keys(localstripe_url)  # the retry comes more than 24 hours later

    with brt.billing.unit() as s:  # the resumed attempt first records that the outcome is unknown
        assert s.get(BillingRun, seeded.billing_run_id).confirm_sent_at is not None
    report = execute_billing_run(brt.billing, seeded.billing_run_id, "run_lost")
    assert report.action == "charged", report
    run = get(brt, BillingRun, seeded.billing_run_id)
    assert (run.status, run.outcome_unknown_since, run.stripe_payment_intent_id) == (
        "succeeded",
        None,
        charge.payment_intent_id,
    )
    assert [
        (p.status, p.stripe_payment_intent_id) for p in payments_of(brt, seeded.billing_run_id)
    ] == [("succeeded", charge.payment_intent_id)]
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


def test_a_recorded_but_unconfirmed_intent_is_confirmed_not_created_again_after_the_keys_expired(
    brt, localstripe_url
):
    seeded = seed(brt)
    charge = created_and_recorded(brt, seeded.billing_run_id)
    forget_idempotency_keys(localstripe_url)
    report = execute_billing_run(brt.billing, seeded.billing_run_id, "run_lost")
    assert report.action == "charged", report
    assert (
        get(brt, BillingRun, seeded.billing_run_id).stripe_payment_intent_id
        == charge.payment_intent_id
    )
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


def test_the_unknown_outcome_is_recorded_before_stripe_is_asked(brt):
    seeded = seed(brt)
    confirmed_unrecorded(brt, seeded.billing_run_id)
    _prepare(
        brt.billing, seeded.billing_run_id, "run_lost"
    )  # the next attempt, up to asking Stripe
    run = get(brt, BillingRun, seeded.billing_run_id)
    assert run.status == "started" and run.outcome_unknown_since is not None


# -- (c) settling the billing run of a failed job -----------------------------------------------


def test_settle_a_charged_run_takes_the_success_path(brt):
    seeded = seed(brt)
    confirmed_unrecorded(brt, seeded.billing_run_id, "run_failed")
    report = settle_failed_job(
        brt.billing, seeded.billing_run_id, "run_failed", "worker lost its lease"
    )
    assert (report.action, report.status, report.extra.get("reconciled")) == (
        "charged",
        "succeeded",
        True,
    )
    assert [p.status for p in payments_of(brt, seeded.billing_run_id)] == ["succeeded"]
    assert get(brt, Subscription, seeded.subscription_id).status == "active"
    tasks = [r["task"] for r in brt.store.list_runs(limit=100)]
    assert "send-customer-payment-succeeded-notification" in tasks
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


def test_settle_a_declined_run_takes_the_failure_path(brt):
    seeded = seed(brt, card=DECLINING)
    confirmed_unrecorded(brt, seeded.billing_run_id, "run_failed")
    report = settle_failed_job(brt.billing, seeded.billing_run_id, "run_failed", None)
    assert (report.action, report.status) == ("declined", "failed")
    assert [p.status for p in payments_of(brt, seeded.billing_run_id)] == ["failed"]


def test_settle_an_uncharged_run_without_intent_requeues_it_with_an_alert_and_it_charges_later(
    make_runtime, localstripe_url, clock
):
    rt = make_runtime(
        alerts={"webhook_url": "http://127.0.0.1:9/alerts"}, **stripe_sections(localstripe_url)
    )
    seeded = seed(rt)
    _prepare(rt.billing, seeded.billing_run_id, "run_failed")  # claimed, then every attempt failed
    report = settle_failed_job(
        rt.billing, seeded.billing_run_id, "run_failed", "StripeUnreachable: …", alert=True
    )
    assert (report.action, report.status, report.extra["requeues"]) == ("requeued", "scheduled", 1)
    run = get(rt, BillingRun, seeded.billing_run_id)
    assert (run.status, run.claimed_by_run, run.requeues) == ("scheduled", None, 1)
    assert [p.status for p in payments_of(rt, seeded.billing_run_id)] == ["canceled"]
    [again] = jobs(rt, "attempt-billing-run")
    assert again["idempotency_key"] == f"attempt-billing-run:{seeded.billing_run_id}"
    assert again["run_at"] == clock.now_ms() + 15 * 60 * 1000  # [billing] requeue_after × 1
    [alert] = jobs(rt, "send-alert")
    assert (
        '"kind": "billing_run_requeued"' in alert["payload"]
        or '"kind":"billing_run_requeued"' in alert["payload"]
    )
    assert rt.billing.gateway.count_charges(False, seeded.stripe_customer) == {}

    clock.advance(15 * 60)
    drain(rt)
    assert get(rt, BillingRun, seeded.billing_run_id).status == "succeeded"
    assert sorted(p.status for p in payments_of(rt, seeded.billing_run_id)) == [
        "canceled",
        "succeeded",
    ]
    assert rt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


def test_settle_an_uncharged_run_cancels_its_recorded_intent_so_a_straggler_cannot_charge(brt):
    from flowjobs.adapters.stripe_gateway import StripeRequestError
    from flowjobs.billing.outcomes import apply_charge_result

    seeded = seed(brt)
    charge = created_and_recorded(brt, seeded.billing_run_id, "run_failed")
    report = settle_failed_job(brt.billing, seeded.billing_run_id, "run_failed", "timed out")
    assert report.action == "requeued"
    assert intent_status(brt, charge.payment_intent_id) == "canceled"
    with pytest.raises(StripeRequestError):  # the failed job's thread, still running, confirms late
        brt.billing.gateway.confirm_payment_intent(
            False,
            charge.payment_intent_id,
            idempotency_key="late",
            amount=charge.amount,
            currency=charge.currency,
        )
    canceled = brt.billing.gateway.retrieve_payment_intent(False, charge.payment_intent_id)
    assert (
        apply_charge_result(brt.billing, seeded.billing_run_id, canceled).action == "skipped"
    )  # its webhook
    assert get(brt, BillingRun, seeded.billing_run_id).status == "scheduled"
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {}


def test_a_straggler_that_lost_its_claim_cannot_record_or_confirm(brt):
    from flowjobs.billing.runs import ClaimLost, _charge

    seeded = seed(brt)
    charge = _prepare(brt.billing, seeded.billing_run_id, "run_failed")
    settle_failed_job(brt.billing, seeded.billing_run_id, "run_failed", None)  # requeued meanwhile
    with pytest.raises(ClaimLost):
        _charge(brt.billing, charge, "run_failed")
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {}


def test_settle_leaves_a_run_of_another_job_alone(brt):
    seeded = seed(brt)
    _prepare(brt.billing, seeded.billing_run_id, "run_owner")
    report = settle_failed_job(brt.billing, seeded.billing_run_id, "run_other", "boom")
    assert report.action == "skipped"
    assert get(brt, BillingRun, seeded.billing_run_id).claimed_by_run == "run_owner"


def test_requeues_are_bounded_then_the_run_fails_quietly_and_its_ladder_retries(
    make_runtime, localstripe_url, clock
):
    rt = make_runtime(billing={"max_requeues": 1}, **stripe_sections(localstripe_url))
    seeded = seed(rt)
    _prepare(rt.billing, seeded.billing_run_id, "run_1")
    assert (
        settle_failed_job(rt.billing, seeded.billing_run_id, "run_1", "boom").action == "requeued"
    )
    _prepare(rt.billing, seeded.billing_run_id, "run_2")
    report = settle_failed_job(rt.billing, seeded.billing_run_id, "run_2", "boom again")
    assert (report.action, report.status, report.extra["requeues"]) == ("failed", "failed", 2)
    run = get(rt, BillingRun, seeded.billing_run_id)
    assert (
        run.error_details["name"] == "NotCharged"
        and "gave up after 2 failed jobs" in run.error_details["message"]
    )
    first, retry = runs_of(rt, seeded.subscription_id)
    assert (retry.status, retry.attempt_number) == ("scheduled", 2)
    assert retry.scheduled_for == utc_from_ms(clock.now_ms()) + timedelta(days=3)
    assert (
        get(rt, Subscription, seeded.subscription_id).status == "active"
    )  # the customer did nothing wrong
    tasks = [r["task"] for r in rt.store.list_runs(limit=100)]
    assert not [t for t in tasks if "payment-failed" in t]
    assert rt.billing.gateway.count_charges(False, seeded.stripe_customer) == {}


# -- (d) fail-stale-payments: every pending state ------------------------------------------------


def stale(rt, clock):
    job = rt.trigger("fail-stale-payments", {"timestamp": iso(clock.now_ms())})
    drain(rt)
    row = rt.store.get_run(job.id)
    assert row["status"] == "completed", row
    import json

    return json.loads(row["result"])


def paid_before(rt, seeded):
    """A succeeded earlier payment, so a failure now takes the retry ladder (not the first-payment cancel)."""
    standalone_payment(
        rt,
        customer_id=seeded.customer_id,
        organization_id=seeded.org_id,
        number="EARLIER-1",
        amount=900,
        status="succeeded",
        subscription_id=seeded.subscription_id,
    )


def test_requires_action_is_followed_then_given_up_with_payment_timeout_and_the_ladder(brt, clock):
    seeded = seed(brt, card=THREE_DS)
    paid_before(brt, seeded)
    report = execute_billing_run(brt.billing, seeded.billing_run_id, "run_x")
    assert report.action == "pending"
    [payment] = payments_of(brt, seeded.billing_run_id)
    assert payment.status == "requires_action"

    clock.advance(7 * 3600)
    result = stale(brt, clock)
    assert result["stillProcessingPaymentIds"] == [payment.id]
    assert get(brt, BillingRun, seeded.billing_run_id).status == "started"

    clock.advance(3 * 86400)
    result = stale(brt, clock)
    assert result["failedPaymentIds"] == [payment.id]
    [payment] = payments_of(brt, seeded.billing_run_id)
    assert (payment.status, payment.failure_code) == ("failed", "payment_timeout")
    assert payment.failure_message == "Payment timed out after 3 days in pending state"
    assert (
        intent_status(brt, payment.stripe_payment_intent_id) == "canceled"
    )  # it can never charge now
    first, retry = runs_of(brt, seeded.subscription_id)
    assert (first.status, retry.status, retry.attempt_number) == ("failed", "scheduled", 2)
    assert get(brt, Subscription, seeded.subscription_id).status == "past_due"
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {}


def test_requires_capture_of_a_standalone_payment_is_given_up_and_canceled(
    make_runtime, localstripe_url, clock
):
    rt = make_runtime(billing={"pending_give_up_after": "1d"}, **stripe_sections(localstripe_url))
    seeded = seed(rt)
    method = get(
        rt,
        __import__("flowjobs.billing.models", fromlist=["PaymentMethod"]).PaymentMethod,
        seeded.method_id,
    )
    client = rt.billing.gateway.client(False)
    intent = client.v1.payment_intents.create(
        params={
            "amount": 700,
            "currency": "usd",
            "customer": seeded.stripe_customer,
            "capture_method": "manual",
            "payment_method": method.stripe_payment_method_id,
            "confirm": True,
        }
    )
    assert intent.status == "requires_capture"
    payment = standalone_payment(
        rt,
        customer_id=seeded.customer_id,
        organization_id=seeded.org_id,
        number="MANUAL-7",
        amount=700,
        status="processing",
        stripe_payment_intent_id=intent.id,
    )
    clock.advance(7 * 3600)
    assert stale(rt, clock)["stillProcessingPaymentIds"] == [payment.id]
    assert get(rt, Payment, payment.id).status == "processing"  # authorised is not paid
    clock.advance(86400)
    result = stale(rt, clock)
    assert result["failedPaymentIds"] == [payment.id], result
    row = get(rt, Payment, payment.id)
    assert (row.status, row.failure_code, row.failure_message) == (
        "failed",
        "payment_timeout",
        "Payment timed out after 1 day in pending state",
    )
    assert intent_status(rt, intent.id) == "canceled"


def test_a_billing_run_intent_never_confirmed_is_requeued_not_failed(brt, clock):
    seeded = seed(brt)
    charge = created_and_recorded(brt, seeded.billing_run_id)
    clock.advance(7 * 3600)
    result = stale(brt, clock)
    [old] = [p for p in payments_of(brt, seeded.billing_run_id) if p.status == "canceled"]
    assert result["requeuedPaymentIds"] == [old.id]
    assert intent_status(brt, charge.payment_intent_id) == "canceled"
    # requeued for requeue_after: the same drain did not charge it yet
    assert get(brt, BillingRun, seeded.billing_run_id).status == "scheduled"
    clock.advance(15 * 60)
    drain(brt)
    assert get(brt, BillingRun, seeded.billing_run_id).status == "succeeded"
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


def test_a_billing_run_payment_without_intent_is_requeued(brt, clock):
    seeded = seed(brt)
    _prepare(
        brt.billing, seeded.billing_run_id, "run_dead"
    )  # died before creating its PaymentIntent
    clock.advance(7 * 3600)
    result = stale(brt, clock)
    assert len(result["requeuedPaymentIds"]) == 1 and result["failedPaymentIds"] == []
    assert get(brt, BillingRun, seeded.billing_run_id).status == "scheduled"


def test_a_charged_but_unrecorded_run_is_settled_by_the_stale_sweep(brt, clock):
    seeded = seed(brt)
    confirmed_unrecorded(brt, seeded.billing_run_id)
    clock.advance(7 * 3600)
    result = stale(brt, clock)
    assert len(result["settledPaymentIds"]) == 1
    assert get(brt, BillingRun, seeded.billing_run_id).status == "succeeded"
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}
