"""Billing jobs end to end: SQLite and PostgreSQL, Stripe through the SDK against localstripe."""

from __future__ import annotations

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
    for task in ("generate-invoice-pdf", "send-customer-payment-succeeded-notification",
                 "send-organization-payment-succeeded-notification"):
        assert len(child_runs(brt, task)) == 1, task


def _payment_id(rt, billing_run_id: str) -> str:
    from sqlmodel import select

    with rt.billing.unit() as s:
        return s.exec(select(Payment.id).where(Payment.billing_run_id == billing_run_id)).one()
