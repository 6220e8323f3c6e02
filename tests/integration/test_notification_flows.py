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
from flowjobs.billing.models import (
    BillingRun,
    CheckoutSession,
    Invoice,
    Payment,
    PaymentMethod,
    Subscription,
)
from flowjobs.billing.runs import execute_billing_run
from flowjobs.webhooks.replay import read_incoming, replay
from tests.billing_helpers import DECLINING, drain, get, standalone_payment, stripe_sections
from tests.integration.test_notifications import mail_sections, smtp  # noqa: F401  (fixture)
from tests.webhook_helpers import envelope, stripe_client

MEMBERS = ["owner@acme.example", "quiet@acme.example"]
SEPA_IBAN = "DE89370400440532013000"


@pytest.fixture
def inbox(make_runtime, localstripe_url, smtp):
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
    stripe_customer = rt.billing.gateway.create_customer(
        False, email="ada@example.com", name="Ada Lovelace"
    )
    with rt.billing.unit() as s:
        org = setup.organization(s, "Acme Analytics", currency=currency, country_code=country_code)
        setup.member(s, org, MEMBERS[0])
        setup.member(
            s,
            org,
            MEMBERS[1],
            role="member",
            preferences={
                k: False
                for k in (
                    "paymentFailed",
                    "paymentSuccessful",
                    "subscriptionCreated",
                    "subscriptionCanceled",
                )
            },
        )
        cust = setup.customer(
            s,
            org,
            email="ada@example.com",
            name="Ada Lovelace",
            stripe_customer_id=stripe_customer,
            billing_address={"address": {"country": country_code}},
        )
        return org.id, cust.id, stripe_customer


def product_checkout_event(
    rt, localstripe_url, org_id, cust_id, stripe_customer, unit_price
) -> tuple[dict, str]:
    """A `product` checkout session for a plan and the real SetupIntent Stripe confirmed for it,
    wrapped as the `setup_intent.succeeded` event Stripe sends."""
    client = stripe_client(localstripe_url)
    intent = client.v1.setup_intents.create(params={"customer": stripe_customer})
    card = {"number": "4242424242424242", "exp_month": 7, "exp_year": 2031, "cvc": "123"}
    intent = client.v1.setup_intents.confirm(
        intent.id, params={"payment_method_data": {"type": "card", "card": card}}
    )
    assert intent.status == "succeeded"
    with rt.billing.unit() as s:
        from flowjobs.billing.models import Organization

        price = setup.plan(
            s, s.get(Organization, org_id), "Pro" if unit_price else "Free", unit_price
        )
        s.add(
            CheckoutSession(
                id=ids.new_id("chckt_session"),
                type="product",
                organization_id=org_id,
                customer_id=cust_id,
                price_id=price.id,
                stripe_setup_intent_id=intent.id,
            )
        )
    event = envelope(
        f"evt_{ids.new_id('x')[2:]}",
        "setup_intent.succeeded",
        intent.to_dict(),
        created=int(time.time()),
    )
    return event, intent.id


def test_a_product_checkout_sends_the_subscription_created_emails_once(inbox, localstripe_url):
    """Spec §7.2/§10: creating a paid subscription (`setup_intent.succeeded` of a `product`
    checkout) sends the customer's "Your Subscription is Confirmed" and the organisation's "New
    Subscription"; its first billing run is charged (org payment-succeeded). The same event again
    creates nothing and sends nothing; a free plan sends neither email."""
    rt, messages = inbox
    org_id, cust_id, stripe_customer = organisation(rt)
    event, intent_id = product_checkout_event(
        rt, localstripe_url, org_id, cust_id, stripe_customer, 4900
    )
    replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(event).encode()))
    drain(rt)
    with rt.billing.unit() as s:
        sub = s.exec(
            select(Subscription).where(Subscription.stripe_setup_intent_id == intent_id)
        ).one()
        method = s.get(PaymentMethod, sub.default_payment_method_id)
        [run] = s.exec(select(BillingRun).where(BillingRun.subscription_id == sub.id)).all()
    assert run.status == "succeeded"
    by_task = received(messages)
    [(rcpts, customer_mail)] = by_task["send-customer-subscription-created-notification"]
    assert (
        rcpts == ["ada@example.com"]
        and customer_mail["Subject"] == "[TEST] Your Subscription is Confirmed"
    )
    body = text(customer_mail)
    assert "Plan: Pro" in body and "Price: $49.00 / month" in body
    assert f"Visa ending {method.payment_method_data['last4']}" in body and "4242" in body
    [(rcpts, org_mail)] = by_task["send-organization-subscription-created-notification"]
    assert rcpts == [MEMBERS[0]]  # quiet@ turned subscriptionCreated off
    assert org_mail["Subject"] == "[TEST] New Subscription: Ada Lovelace subscribed to Pro"
    assert (
        "send-organization-payment-succeeded-notification" in by_task
    )  # the first billing run was charged

    again = {**event, "id": f"evt_{ids.new_id('x')[2:]}", "created": event["created"] + 5}
    replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(again).encode()))
    drain(rt)
    assert len(received(messages)["send-customer-subscription-created-notification"]) == 1

    free_event, free_intent = product_checkout_event(
        rt, localstripe_url, org_id, cust_id, stripe_customer, 0
    )
    count = len(messages)
    replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(free_event).encode()))
    drain(rt)
    with rt.billing.unit() as s:
        free = s.exec(
            select(Subscription).where(Subscription.stripe_setup_intent_id == free_intent)
        ).one()
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


def test_a_first_payment_failure_sends_payment_failed_without_a_retry_date_and_the_cancellation_emails(
    inbox,
):
    """Spec §7.6: the first payment of a subscription declined cancels it; the customer gets the
    payment-failed email (no retry date — there is none) besides the subscription-canceled
    emails, as upstream's `charge.failed` path sent it."""
    rt, messages = inbox
    sub_id, run_id = seeded_subscription(rt, card=DECLINING)
    rt.trigger(
        "attempt-billing-run",
        {"billingRunId": run_id},
        idempotency_key=f"attempt-billing-run:{run_id}",
    )
    drain(rt)
    assert get(rt, BillingRun, run_id).status == "failed"
    assert get(rt, Subscription, sub_id).status == "canceled"
    assert [
        r for r in get_runs(rt, sub_id) if r.status == "scheduled"
    ] == []  # no retry: nothing to announce
    by_task = received(messages)
    [(rcpts, failed)] = by_task["send-customer-payment-failed-notification"]
    assert rcpts == ["ada@example.com"] and failed["Subject"] == "[TEST] Your Payment Failed"
    body = text(failed)
    assert (
        "We will not retry this payment automatically." in body and "We will try again" not in body
    )
    assert "Your card was declined" in body and "Amount due: $25.00" in body
    assert [r for r, _ in by_task["send-customer-subscription-canceled-notification"]] == [
        ["ada@example.com"]
    ]
    assert [r for r, _ in by_task["send-organization-subscription-canceled-notification"]] == [
        [MEMBERS[0]]
    ]


def get_runs(rt, sub_id):
    with rt.billing.unit() as s:
        return list(s.exec(select(BillingRun).where(BillingRun.subscription_id == sub_id)))


def sepa_subscription(rt, localstripe_url):
    """A German customer paying by SEPA debit and a subscription whose first run is due."""
    org_id, cust_id, stripe_customer = organisation(rt, currency="EUR", country_code="DE")
    client = stripe_client(localstripe_url)
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": SEPA_IBAN},
            "billing_details": {"name": "Ada Lovelace", "email": "ada@example.com"},
        }
    )
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
        livemode=False,
        amount=charge.amount,
        currency=charge.currency,
        customer=charge.customer,
        payment_method=charge.payment_method,
        metadata=charge.metadata,
        idempotency_key=charge.idempotency_key,
    )
    assert (
        record_intent(rt.billing, charge, created.payment_intent_id, "run_attempt")
        == created.payment_intent_id
    )
    if (
        status != "processing"
    ):  # confirm it off-session, as the attempt would: Stripe says what came of it
        rt.billing.gateway.confirm_payment_intent(
            False,
            created.payment_intent_id,
            idempotency_key=charge.confirm_key,
            amount=charge.amount,
            currency=charge.currency,
        )
    intent = (
        stripe_client(localstripe_url)
        .v1.payment_intents.retrieve(created.payment_intent_id)
        .to_dict()
    )
    if status == "processing":
        intent.update(
            status="processing",
            latest_charge={
                "id": f"py_{ids.new_id('x')[2:]}",
                "object": "charge",
                "status": "pending",
                "amount": intent["amount"],
                "currency": intent["currency"],
                "payment_intent": intent["id"],
                "failure_code": None,
                "failure_message": None,
            },
        )
    return envelope(
        f"evt_{ids.new_id('x')[2:]}", f"payment_intent.{status}", intent, created=int(time.time())
    )


def test_a_processing_payment_sends_awaiting_payment_confirmation_to_every_member_once(
    inbox, localstripe_url
):
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
    assert (
        f"A payment of €30.00 from Ada Lovelace for invoice #{invoice.invoice_number} is processing."
        in body
    )
    assert "Amount due: €30.00" in body
    assert set(by_task) == {
        "send-organization-awaiting-payment-confirmation-notification"
    }  # nothing else yet

    # Stripe says `processing` again (a later event, or the inline answer): no second email
    again = {**event, "id": f"evt_{ids.new_id('x')[2:]}", "created": event["created"] + 60}
    replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(again).encode()))
    drain(rt)
    assert (
        len(received(messages)["send-organization-awaiting-payment-confirmation-notification"]) == 1
    )


SIXTEEN = [
    "send-customer-payment-succeeded-notification",
    "send-customer-payment-failed-notification",
    "send-customer-subscription-created-notification",
    "send-customer-subscription-upgraded-notification",
    "send-customer-subscription-adjusted-notification",
    "send-customer-subscription-canceled-notification",
    "send-customer-subscription-cancellation-scheduled-notification",
    "send-customer-trial-expired-notification",
    "send-organization-payment-succeeded-notification",
    "send-organization-payment-failed-notification",
    "send-organization-subscription-created-notification",
    "send-organization-subscription-adjusted-notification",
    "send-organization-subscription-canceled-notification",
    "send-organization-subscription-cancellation-scheduled-notification",
    "send-organization-payouts-enabled-notification",
    "send-organization-onboarding-completed-notification",
]


def event_file(rt, event: dict):
    """A Stripe event or Supabase payload, stored and routed as `flowjobs replay-event` does."""
    return replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(event).encode()))


def test_every_notification_is_fired_by_a_flow_and_reaches_the_smtp_server(
    inbox, localstripe_url, clock
):
    """Issue 13: each of the sixteen tasks of spec §10 is triggered by the flow the spec names —
    never by hand here — and its email is delivered to the SMTP server. Flows: a product checkout
    (`setup_intent.succeeded`), a billing run charged, a renewal declined (retry ladder), a first
    payment declined (cancellation), `billing cancel` at period end, a plan change, a free → paid
    change, a trial rolled over without a payment method, Supabase `organizations:UPDATE`, Stripe
    `account.updated`."""
    from datetime import timedelta

    from flowjobs.billing import cancel as cancel_mod
    from flowjobs.billing.adjust import adjust_subscription
    from flowjobs.billing.models import Customer, Organization
    from flowjobs.billing.rollover import transition_billing_period
    from flowjobs.billing.types import utc_from_ms
    from tests.webhook_helpers import ACCOUNT_ID

    rt, messages = inbox
    now = utc_from_ms(clock.now_ms())
    org_id, cust_id, stripe_customer = organisation(rt)

    # a product checkout: subscription created (customer + organisation)
    event, _ = product_checkout_event(rt, localstripe_url, org_id, cust_id, stripe_customer, 4900)
    event_file(rt, event)

    # a billing run charged: receipt + organisation payment-succeeded. localstripe refuses live-mode
    # charges (Connect transfer parameters), and receipts go out for live-mode invoices only: the
    # charged invoice is switched to live mode before the worker sends its receipt.
    _, paid_run = seeded_subscription(rt, card="4242424242424242")
    assert execute_billing_run(rt.billing, paid_run, "run_inline").action == "charged"
    with rt.billing.unit() as s:
        payment = s.exec(select(Payment).where(Payment.billing_run_id == paid_run)).one()
        payment.livemode = True
        s.get(Invoice, payment.invoice_id).livemode = True

    # a renewal declined after an earlier payment: the retry ladder (customer + organisation payment-failed)
    ladder_sub, ladder_run = seeded_subscription(rt, card=DECLINING)
    sub = get(rt, Subscription, ladder_sub)
    standalone_payment(
        rt,
        customer_id=sub.customer_id,
        organization_id=sub.organization_id,
        number="EARLIER-1",
        amount=900,
        status="succeeded",
        subscription_id=sub.id,
    )
    assert execute_billing_run(rt.billing, ladder_run, "run_inline").action == "declined"

    # a first payment declined: the subscription is canceled (customer + organisation canceled)
    _, first_run = seeded_subscription(rt, card=DECLINING)
    assert execute_billing_run(rt.billing, first_run, "run_inline").action == "declined"

    # `billing cancel` at the period end (customer + organisation cancellation scheduled)
    scheduled_sub, _ = seeded_subscription(rt, card="4242424242424242")
    cancel_mod.cancel(rt.billing, scheduled_sub)

    # a plan change charged with its proration (customer + organisation adjusted)
    adjusted_sub, adjusted_run = seeded_subscription(rt, card="4242424242424242")
    assert execute_billing_run(rt.billing, adjusted_run, "run_inline").action == "charged"
    with rt.billing.unit() as s:
        team = setup.plan(
            s, s.get(Organization, s.get(Subscription, adjusted_sub).organization_id), "Team", 9900
        )
    adjust_subscription(rt.billing, adjusted_sub, price_id=team.id)

    # free → paid: a customer on a free plan checks out a paid one (customer upgraded; the
    # organisation hears of a new subscription)
    free_org, free_cust, free_stripe = organisation(rt)
    with rt.billing.unit() as s:
        cust = s.get(Customer, free_cust)
        free_plan = setup.plan(s, s.get(Organization, free_org), "Free", 0)
        free_sub, _, _ = setup.subscription(s, cust, free_plan, None, start=now - timedelta(days=3))
    upgrade, upgrade_intent = product_checkout_event(
        rt, localstripe_url, free_org, free_cust, free_stripe, 2500
    )
    event_file(rt, upgrade)

    # a trial that ends without a payment method: past_due (customer trial-expired)
    with rt.billing.unit() as s:
        cust = s.get(Customer, cust_id)
        plan = setup.plan(s, s.get(Organization, org_id), "Trial Pro", 2500)
        _, trial_period, _ = setup.subscription(
            s, cust, plan, None, start=now - timedelta(days=14), trial_end=now - timedelta(hours=1)
        )
    transition_billing_period(rt.billing, trial_period.id)

    # Supabase: payouts turned on (payouts enabled); Stripe Connect: onboarding finished (onboarding completed)
    with rt.billing.unit() as s:
        s.get(Organization, org_id).stripe_account_id = ACCOUNT_ID
    event_file(
        rt,
        {
            "type": "UPDATE",
            "table": "organizations",
            "schema": "public",
            "record": {"id": org_id, "payouts_enabled": False, "name": "Acme Analytics"},
            "old_record": {"id": org_id, "payouts_enabled": False, "name": "Acme"},
        },
    )
    account = {
        "id": ACCOUNT_ID,
        "object": "account",
        "type": "express",
        "charges_enabled": True,
        "details_submitted": True,
        "payouts_enabled": True,
        "created": 1_700_000_000,
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "requirements": {
            "currently_due": [],
            "eventually_due": [],
            "past_due": [],
            "disabled_reason": None,
        },
        "tos_acceptance": {"date": 1_700_000_000, "ip": "203.0.113.7"},
        "metadata": {},
    }
    event_file(
        rt, envelope("evt_1AllSixteenAccount", "account.updated", account, account=ACCOUNT_ID)
    )
    drain(rt)  # onboarding is announced while payouts are still off; then payouts are turned on
    event_file(
        rt,
        {
            "type": "UPDATE",
            "table": "organizations",
            "schema": "public",
            "record": {"id": org_id, "payouts_enabled": True, "name": "Acme Analytics"},
            "old_record": {"id": org_id, "payouts_enabled": False, "name": "Acme Analytics"},
        },
    )
    drain(rt)

    by_task = received(messages)
    fired = {r["task"] for r in rt.store.list_runs(limit=1000)} & set(SIXTEEN)
    assert sorted(set(SIXTEEN) - fired) == [], "never fired by any flow"
    runs = [r for r in rt.store.list_runs(limit=1000) if r["task"] in SIXTEEN]
    unsent = sorted(set(SIXTEEN) - set(by_task))
    assert unsent == [], (  # fired but no email reached the SMTP server: say what the runs did
        [(r["task"], r["status"], r["error"], r["result"]) for r in runs if r["task"] in unsent]
    )
    assert {r["status"] for r in runs} == {"completed"}
    for task in SIXTEEN:  # every email a run says it sent arrived, once
        sent = sum(json.loads(r["result"])["sent"] for r in runs if r["task"] == task)
        assert len(by_task[task]) == sent, (task, [msg["Subject"] for _, msg in by_task[task]])
    receipt = by_task["send-customer-payment-succeeded-notification"][0][1]
    assert (
        receipt["Subject"].startswith("Acme Analytics Order Receipt: #")
        and len(list(receipt.iter_attachments())) == 2
    )
    retries = sorted(
        (
            "We will try again on January 18, 2027." in text(msg),
            "We will not retry this payment automatically." in text(msg),
        )
        for _, msg in by_task["send-customer-payment-failed-notification"]
    )
    assert retries == [
        (False, True),
        (True, False),
    ]  # the first payment's: no retry; the renewal's: in 3 days
    with rt.billing.unit() as s:
        replaced = s.get(Subscription, free_sub.id)
        new = s.exec(
            select(Subscription).where(Subscription.stripe_setup_intent_id == upgrade_intent)
        ).one()
    assert (
        replaced.status,
        replaced.cancellation_reason,
        replaced.replaced_by_subscription_id,
    ) == ("canceled", "upgraded_to_paid", new.id)
    upgraded = text(by_task["send-customer-subscription-upgraded-notification"][0][1])
    assert (
        "You moved from Free to Pro." in upgraded
        and "Previous plan: Free ($0.00 / month)" in upgraded
    )
    canceled = [text(msg) for _, msg in by_task["send-customer-subscription-canceled-notification"]]
    assert not any(
        "Free" in body for body in canceled
    )  # an upgrade is not announced as a cancellation
