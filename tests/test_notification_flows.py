"""Notifications fired by the flows the spec names (issue 13): each flow runs for real (billing
runs charged at localstripe, webhook events replayed and handled by the worker) and its emails
are read back from a real SMTP server (aiosmtpd), on both backends."""

from __future__ import annotations

import json
import time

import pytest
from sqlmodel import select

from flowjobs import ids
from flowjobs.billing import setup
from flowjobs.billing.models import BillingRun, CheckoutSession, Invoice, Payment, PaymentMethod, Subscription
from flowjobs.billing.runs import execute_billing_run
from flowjobs.webhooks.replay import read_incoming, replay
from tests.billing_helpers import DECLINING, drain, get, stripe_sections
from tests.test_notifications import mail_sections, smtp  # noqa: F401  (fixture)
from tests.webhook_helpers import envelope, stripe_client

MEMBERS = ["owner@acme.example", "quiet@acme.example"]
SEPA_IBAN = "DE89370400440532013000"


@pytest.fixture
def inbox(make_runtime, localstripe_url, smtp):  # noqa: F811
    """A runtime wired to localstripe and to a real SMTP server; returns (rt, received)."""
    port, handler = smtp()
    rt = make_runtime(**stripe_sections(localstripe_url), **mail_sections(port))
    return rt, handler.messages


def received(messages) -> dict[str, list[tuple[list[str], object]]]:
    by_task: dict[str, list] = {}
    for rcpts, msg in messages:
        by_task.setdefault(str(msg["X-Flowjobs-Task"]).strip(), []).append((sorted(rcpts), msg))
    return by_task


def text(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def organisation(rt, *, currency="USD", country_code="US"):
    """An organisation with two members (one who turned every preference off) and a customer
    known to Stripe (localstripe)."""
    stripe_customer = rt.billing.gateway.create_customer(False, email="ada@example.com", name="Ada Lovelace")
    with rt.billing.unit() as s:
        org = setup.organization(s, "Acme Analytics", currency=currency, country_code=country_code)
        setup.member(s, org, MEMBERS[0])
        setup.member(s, org, MEMBERS[1], role="member",
                     preferences={k: False for k in ("paymentFailed", "paymentSuccessful", "subscriptionCreated",
                                                     "subscriptionCanceled")})
        cust = setup.customer(s, org, email="ada@example.com", name="Ada Lovelace", stripe_customer_id=stripe_customer,
                              billing_address={"address": {"country": country_code}})
        return org.id, cust.id, stripe_customer


def product_checkout_event(rt, localstripe_url, org_id, cust_id, stripe_customer, unit_price) -> tuple[dict, str]:
    """A `product` checkout session for a plan and the real SetupIntent Stripe confirmed for it,
    wrapped as the `setup_intent.succeeded` event Stripe sends."""
    client = stripe_client(localstripe_url)
    intent = client.v1.setup_intents.create(params={"customer": stripe_customer})
    card = {"number": "4242424242424242", "exp_month": 7, "exp_year": 2031, "cvc": "123"}
    intent = client.v1.setup_intents.confirm(intent.id, params={"payment_method_data": {"type": "card", "card": card}})
    assert intent.status == "succeeded"
    with rt.billing.unit() as s:
        from flowjobs.billing.models import Organization

        price = setup.plan(s, s.get(Organization, org_id), "Pro" if unit_price else "Free", unit_price)
        s.add(CheckoutSession(id=ids.new_id("chckt_session"), type="product", organization_id=org_id,
                              customer_id=cust_id, price_id=price.id, stripe_setup_intent_id=intent.id))
    event = envelope(f"evt_{ids.new_id('x')[2:]}", "setup_intent.succeeded", intent.to_dict(), created=int(time.time()))
    return event, intent.id


def test_a_product_checkout_sends_the_subscription_created_emails_once(inbox, localstripe_url):
    """Spec §7.2/§10: creating a paid subscription (`setup_intent.succeeded` of a `product`
    checkout) sends the customer's "Your Subscription is Confirmed" and the organisation's "New
    Subscription"; its first billing run is charged (org payment-succeeded). The same event again
    creates nothing and sends nothing; a free plan sends neither email."""
    rt, messages = inbox
    org_id, cust_id, stripe_customer = organisation(rt)
    event, intent_id = product_checkout_event(rt, localstripe_url, org_id, cust_id, stripe_customer, 4900)
    replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(event).encode()))
    drain(rt)
    with rt.billing.unit() as s:
        sub = s.exec(select(Subscription).where(Subscription.stripe_setup_intent_id == intent_id)).one()
        method = s.get(PaymentMethod, sub.default_payment_method_id)
        [run] = s.exec(select(BillingRun).where(BillingRun.subscription_id == sub.id)).all()
    assert run.status == "succeeded"
    by_task = received(messages)
    [(rcpts, customer_mail)] = by_task["send-customer-subscription-created-notification"]
    assert rcpts == ["ada@example.com"] and customer_mail["Subject"] == "[TEST] Your Subscription is Confirmed"
    body = text(customer_mail)
    assert "Plan: Pro" in body and "Price: $49.00 / month" in body
    assert f"Visa ending {method.payment_method_data['last4']}" in body and "4242" in body
    [(rcpts, org_mail)] = by_task["send-organization-subscription-created-notification"]
    assert rcpts == [MEMBERS[0]]  # quiet@ turned subscriptionCreated off
    assert org_mail["Subject"] == "[TEST] New Subscription: Ada Lovelace subscribed to Pro"
    assert "send-organization-payment-succeeded-notification" in by_task  # the first billing run was charged

    again = {**event, "id": f"evt_{ids.new_id('x')[2:]}", "created": event["created"] + 5}
    replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(again).encode()))
    drain(rt)
    assert len(received(messages)["send-customer-subscription-created-notification"]) == 1

    free_event, free_intent = product_checkout_event(rt, localstripe_url, org_id, cust_id, stripe_customer, 0)
    count = len(messages)
    replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(free_event).encode()))
    drain(rt)
    with rt.billing.unit() as s:
        free = s.exec(select(Subscription).where(Subscription.stripe_setup_intent_id == free_intent)).one()
    assert free.is_free_plan and len(messages) == count  # upstream: no emails for free plans


def seeded_subscription(rt, *, card: str, price: int = 2500):
    """A customer with a card attached at localstripe and a subscription whose first billing run is due."""
    org_id, cust_id, stripe_customer = organisation(rt)
    pm = rt.billing.gateway.attach_card(False, customer=stripe_customer, number=card)
    with rt.billing.unit() as s:
        from flowjobs.billing.models import Customer, Organization

        cust = s.get(Customer, cust_id)
        method = setup.card(s, cust, stripe_payment_method_id=pm[0], last4=pm[1])
        plan = setup.plan(s, s.get(Organization, org_id), "Pro", price)
        sub, period, run = setup.subscription(s, cust, plan, method, start=rt.billing.now())
        return sub.id, run.id


def test_a_first_payment_failure_sends_payment_failed_without_a_retry_date_and_the_cancellation_emails(inbox):
    """Spec §7.6: the first payment of a subscription declined cancels it; the customer gets the
    payment-failed email (no retry date — there is none) besides the subscription-canceled
    emails, as upstream's `charge.failed` path sent it."""
    rt, messages = inbox
    sub_id, run_id = seeded_subscription(rt, card=DECLINING)
    rt.trigger("attempt-billing-run", {"billingRunId": run_id}, idempotency_key=f"attempt-billing-run:{run_id}")
    drain(rt)
    assert get(rt, BillingRun, run_id).status == "failed"
    assert get(rt, Subscription, sub_id).status == "canceled"
    assert [r for r in get_runs(rt, sub_id) if r.status == "scheduled"] == []  # no retry: nothing to announce
    by_task = received(messages)
    [(rcpts, failed)] = by_task["send-customer-payment-failed-notification"]
    assert rcpts == ["ada@example.com"] and failed["Subject"] == "[TEST] Your Payment Failed"
    body = text(failed)
    assert "We will not retry this payment automatically." in body and "We will try again" not in body
    assert "Your card was declined" in body and "Amount due: $25.00" in body
    assert [r for r, _ in by_task["send-customer-subscription-canceled-notification"]] == [["ada@example.com"]]
    assert [r for r, _ in by_task["send-organization-subscription-canceled-notification"]] == [[MEMBERS[0]]]


def get_runs(rt, sub_id):
    with rt.billing.unit() as s:
        return list(s.exec(select(BillingRun).where(BillingRun.subscription_id == sub_id)))


def sepa_subscription(rt, localstripe_url):
    """A German customer paying by SEPA debit and a subscription whose first run is due."""
    org_id, cust_id, stripe_customer = organisation(rt, currency="EUR", country_code="DE")
    client = stripe_client(localstripe_url)
    pm = client.v1.payment_methods.create(params={"type": "sepa_debit", "sepa_debit": {"iban": SEPA_IBAN},
                                                  "billing_details": {"name": "Ada Lovelace",
                                                                      "email": "ada@example.com"}})
    client.v1.payment_methods.attach(pm.id, params={"customer": stripe_customer})
    with rt.billing.unit() as s:
        from flowjobs.billing.models import Customer, Organization

        cust = s.get(Customer, cust_id)
        stripe_pm = pm.to_dict()
        stripe_pm.setdefault("sepa_debit", {})["country"] = "DE"
        method = setup.payment_method_from_stripe(s, cust, stripe_pm)
        plan = setup.plan(s, s.get(Organization, org_id), "Pro", 3000)
        sub, period, run = setup.subscription(s, cust, plan, method, start=rt.billing.now())
        return org_id, sub.id, run.id


def processing_event(rt, localstripe_url, billing_run_id: str, status: str = "processing") -> dict:
    """The billing run's real PaymentIntent (claimed, created at localstripe, its id recorded — as
    an attempt does before confirming), as Stripe sends it in `payment_intent.<status>`.

    localstripe cannot hold a PaymentIntent in `processing` (it settles even SEPA debits at
    once), so the object's status and pending charge are what Stripe reports for a bank debit
    while it clears; every other field is the real object's."""
    from flowjobs.billing.runs import _prepare, record_intent

    charge = _prepare(rt.billing, billing_run_id, "run_attempt")
    created = rt.billing.gateway.create_payment_intent(
        livemode=False, amount=charge.amount, currency=charge.currency, customer=charge.customer,
        payment_method=charge.payment_method, metadata=charge.metadata, idempotency_key=charge.idempotency_key)
    assert record_intent(rt.billing, charge, created.payment_intent_id, "run_attempt") == created.payment_intent_id
    if status != "processing":  # confirm it off-session, as the attempt would: Stripe says what came of it
        rt.billing.gateway.confirm_payment_intent(False, created.payment_intent_id, idempotency_key=charge.confirm_key,
                                                  amount=charge.amount, currency=charge.currency)
    intent = stripe_client(localstripe_url).v1.payment_intents.retrieve(created.payment_intent_id).to_dict()
    if status == "processing":
        intent.update(status="processing", latest_charge={
            "id": f"py_{ids.new_id('x')[2:]}", "object": "charge", "status": "pending", "amount": intent["amount"],
            "currency": intent["currency"], "payment_intent": intent["id"], "failure_code": None,
            "failure_message": None})
    return envelope(f"evt_{ids.new_id('x')[2:]}", f"payment_intent.{status}", intent, created=int(time.time()))


def test_a_processing_payment_sends_awaiting_payment_confirmation_to_every_member_once(inbox, localstripe_url):
    """Spec §7.6: a bank debit's PaymentIntent is `processing`: the invoice awaits confirmation
    and every member of the organisation — preferences notwithstanding — gets "Awaiting Payment
    Confirmation", once for the payment even when Stripe says `processing` again."""
    rt, messages = inbox
    org_id, sub_id, run_id = sepa_subscription(rt, localstripe_url)
    event = processing_event(rt, localstripe_url, run_id)
    replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(event).encode()))
    drain(rt)
    with rt.billing.unit() as s:
        payment = s.exec(select(Payment).where(Payment.billing_run_id == run_id)).one()
        invoice = s.get(Invoice, payment.invoice_id)
    assert get(rt, BillingRun, run_id).status == "awaiting_payment_confirmation"
    assert (payment.status, invoice.status) == ("processing", "awaiting_payment_confirmation")
    by_task = received(messages)
    [(rcpts, msg)] = by_task["send-organization-awaiting-payment-confirmation-notification"]
    assert rcpts == sorted(MEMBERS)  # all members: the quiet one too
    assert msg["Subject"] == "[TEST] Awaiting Payment Confirmation"
    body = text(msg)
    assert f"A payment of €30.00 from Ada Lovelace for invoice #{invoice.invoice_number} is processing." in body
    assert "Amount due: €30.00" in body
    assert set(by_task) == {"send-organization-awaiting-payment-confirmation-notification"}  # nothing else yet

    # Stripe says `processing` again (a later event, or the inline answer): no second email
    again = {**event, "id": f"evt_{ids.new_id('x')[2:]}", "created": event["created"] + 60}
    replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(again).encode()))
    drain(rt)
    assert len(received(messages)["send-organization-awaiting-payment-confirmation-notification"]) == 1
