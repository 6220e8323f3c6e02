"""Refunds made at Stripe (flowjobs.billing.refunds): a real charge at localstripe, refunded in
part and then in full there, each `charge.refunded` event handled through the inbox as a
delivered one is. Both backends."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from flowjobs.billing.models import Invoice, Payment
from flowjobs.webhooks.replay import read_incoming, replay
from tests.billing_helpers import drain, get, seed, stripe_sections
from tests.integration.test_documents import after, lines_of
from tests.webhook_helpers import SECRET, envelope, stripe_client


@pytest.fixture
def rrt(make_runtime, localstripe_url):
    sections = stripe_sections(localstripe_url)
    sections["stripe"]["webhook_secret"] = SECRET
    return make_runtime(**sections)


def deliver(rt, event: dict) -> dict:
    stored = replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(event).encode()))
    assert stored.status == "routed", stored
    drain(rt)
    run = rt.store.get_run(stored.run_id)
    assert run["status"] == "completed", run
    return json.loads(run["result"])


def test_a_refund_at_stripe_is_recorded_in_part_then_in_full_and_older_events_change_nothing(
    rrt, localstripe_url
):
    seeded = seed(rrt, unit_price=2500)
    rrt.trigger("attempt-billing-run", {"billingRunId": seeded.billing_run_id})
    drain(rrt)  # the first period's billing run charges $25.00
    with rrt.billing.unit() as s:
        payment = s.exec(
            select(Payment).where(Payment.subscription_id == seeded.subscription_id)
        ).one()
        payment_id, charge_id, invoice_id = payment.id, payment.stripe_charge_id, payment.invoice_id
    assert charge_id and get(rrt, Invoice, invoice_id).status == "paid"
    client = stripe_client(localstripe_url)

    def refunded_event(n: int) -> dict:
        charge = client.v1.charges.retrieve(charge_id).to_dict()
        return envelope(f"evt_1Refund{n}", "charge.refunded", charge, created=1_800_000_000 + n)

    client.v1.refunds.create(params={"charge": charge_id, "amount": 1000})
    part = refunded_event(1)
    result = deliver(rrt, part)
    assert result["result"] == "partially refunded" and result["refundedAmount"] == 1000
    paid = get(rrt, Payment, payment_id)
    assert (paid.status, paid.refunded, paid.refunded_amount) == ("succeeded", False, 1000)
    assert get(rrt, Invoice, invoice_id).status == "partially_refunded"
    from flowjobs.billing import repo

    with rrt.billing.unit() as s:  # a redelivered payment event made it `paid`, refunds owed
        assert not repo.set_invoice_status(s.get(Invoice, invoice_id), "paid")
    assert get(rrt, Invoice, invoice_id).status == "partially_refunded"
    # a refund is not a debt: the invoice says it was paid, owes nothing, offers no pay link
    # (it said "$10.00 due", and its period closed past_due)
    from flowjobs.billing.totals import invoice_totals
    from flowjobs.documents.service import invoice_pdf

    with rrt.billing.unit() as s:
        assert invoice_totals(s, invoice_id).due == 0
    lines = lines_of(invoice_pdf(rrt.billing, invoice_id, "https://pay.example/{invoiceId}"))
    assert any(ln.startswith("Paid ") for ln in lines) and not any(" due " in ln for ln in lines)
    assert after(lines, "Amount due") == "$0.00" and not [ln for ln in lines if "Pay online" in ln]
    stored = [r["idempotency_key"] for r in rrt.store.list_runs(task="generate-invoice-pdf")]
    assert f"generate-invoice-pdf-{invoice_id}-refund-{payment_id}-1000" in stored
    from flowjobs.billing.models import BillingPeriod
    from flowjobs.billing.rollover import close_period

    with rrt.billing.unit() as s:
        assert close_period(rrt.billing, s, s.get(BillingPeriod, seeded.period_id)) == "completed"
        s.rollback()  # (the period is not over: only its close rule was asked)

    client.v1.refunds.create(params={"charge": charge_id})  # the rest
    assert deliver(rrt, refunded_event(2))["result"] == "refunded"
    done = get(rrt, Payment, payment_id)
    assert (done.status, done.refunded, done.refunded_amount) == ("refunded", True, 2500)
    assert done.refunded_at is not None
    assert get(rrt, Invoice, invoice_id).status == "refunded"

    late = deliver(rrt, {**part, "id": "evt_1RefundLate"})  # the first one, delivered again
    assert late["result"] == "unchanged" and get(rrt, Payment, payment_id).refunded_amount == 2500

    from flowjobs.billing.models import Subscription
    from flowjobs.billing.outcomes import _first_payment

    with rrt.billing.unit() as s:
        # refunded, month 1 was still paid: a decline of month 2 is retried, not taken for a
        # failed first payment that cancels the subscription at once
        assert not _first_payment(s, s.get(Subscription, seeded.subscription_id))
    assert get(rrt, Invoice, invoice_id).status == "refunded"

    from flowjobs.documents.service import receipt_pdf

    invoice = lines_of(invoice_pdf(rrt.billing, invoice_id))
    assert after(invoice, "Refunded") == "-$25.00"
    receipt = lines_of(receipt_pdf(rrt.billing, payment_id))
    assert after(receipt, "Total refunded without credit note") == "$25.00"


def test_a_refund_that_comes_before_its_payment_succeeded_waits_for_it(rrt, localstripe_url):
    """Stripe does not deliver in order: a refund handled while the payment was still
    `processing` was `ignored`, and lost for good."""
    seeded = seed(rrt, unit_price=2500)
    rrt.trigger("attempt-billing-run", {"billingRunId": seeded.billing_run_id})
    drain(rrt)
    with rrt.billing.unit() as s:
        payment = s.exec(
            select(Payment).where(Payment.subscription_id == seeded.subscription_id)
        ).one()
        payment.status = "processing"  # as if its PaymentIntent's success were not in yet
        payment_id, charge_id = payment.id, payment.stripe_charge_id
    client = stripe_client(localstripe_url)
    client.v1.refunds.create(params={"charge": charge_id})
    charge = client.v1.charges.retrieve(charge_id).to_dict()
    stored = replay(
        rrt.billing,
        rrt.settings,
        read_incoming(
            rrt.settings, json.dumps(envelope("evt_1Early", "charge.refunded", charge)).encode()
        ),
    )
    drain(rrt)
    run = rrt.store.get_run(stored.run_id)
    assert run["status"] == "retrying" and "is processing" in run["error"], run
    assert get(rrt, Payment, payment_id).refunded_amount is None


def test_a_refund_of_a_charge_flowjobs_never_recorded_is_ignored_and_said_so(rrt):
    charge = {
        "id": "ch_1Elsewhere",
        "object": "charge",
        "amount": 500,
        "amount_refunded": 500,
        "currency": "usd",
        "payment_intent": "pi_1Elsewhere",
    }
    result = deliver(rrt, envelope("evt_1Elsewhere", "charge.refunded", charge))
    assert result == {"result": "ignored", "detail": "no payment for charge ch_1Elsewhere"}
