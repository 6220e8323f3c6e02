"""One-time checkout payments (issue 16 §2; spec §8.2 `payment_intent.succeeded` for checkout
sessions, §8.3, §4.6): real PaymentIntents confirmed at localstripe with the checkout metadata
(`type: checkout_session`, `checkoutSessionId`), their real events (or, for the objects
localstripe emits no event for — a failed Charge, a canceled PaymentIntent — the real object
in Stripe's envelope) replayed as files with `flowjobs replay-event` (a subprocess) and
delivered over HTTP to `flowjobs serve` (a process), handled by `flowjobs run-worker --burst`
(a process), emails read back from a real SMTP server, PDFs by their text — on SQLite and
PostgreSQL (the `served` fixture's database is parametrized).

localstripe has one mode and receipts go out for live-mode invoices only (spec §10): the
sessions whose receipt is checked are live-mode rows paid at localstripe.
"""

from __future__ import annotations

import io
import json
import time

import pytest
import stripe
from sqlmodel import select

from flowjobs import ids
from flowjobs.billing import purchases
from flowjobs.billing.models import (
    CheckoutSession,
    Customer,
    DiscountRedemption,
    Event,
    Invoice,
    Organization,
    Payment,
    Purchase,
)
from flowjobs.billing.repo import BillingError
from flowjobs.webhooks.replay import read_incoming, replay
from tests.billing_helpers import DECLINING, VISA, drain, get, stripe_sections
from tests.cli_helpers import flowjobs
from tests.integration.test_handlers_e2e import deliver, replay_file, work
from tests.integration.test_notification_flows import MEMBERS, organisation, received, text
from tests.integration.test_notifications import smtp  # noqa: F401  (fixture)
from tests.integration.test_webhooks_http import served  # noqa: F401  (fixture)
from tests.webhook_helpers import envelope, event_for, stripe_client

PRICE = 4900  # "Field Guide", $49.00


def open_checkout(
    rt, *, livemode=False, discount=None, number_of_payments=None, kind="product", quantity=1
) -> tuple:
    """An organisation, its customer (known to localstripe) and an open `product` checkout
    session for a one-time price: (session id, Stripe customer id)."""
    org_id, cust_id, stripe_customer = organisation(rt)
    with rt.billing.unit() as s:
        price = purchases.one_time_price(
            s, s.get(Organization, org_id), "Field Guide", PRICE, livemode=livemode
        )
        session = purchases.checkout_session(
            s,
            s.get(Customer, cust_id),
            price,
            livemode=livemode,
            discount=discount,
            number_of_payments=number_of_payments,
            kind=kind,
            quantity=quantity,
        )
        return session.id, stripe_customer


def pay(
    rt, localstripe_url, session_id: str, stripe_customer: str, card: str, currency: str = "usd"
) -> dict:
    """The customer pays the session with `card`: a PaymentIntent for the session's amount,
    with the checkout metadata, confirmed at localstripe. Returns it as Stripe holds it."""
    pm_id, _, _ = rt.billing.gateway.attach_card(False, customer=stripe_customer, number=card)
    with rt.billing.unit() as s:
        amount = purchases.amount_due(s, s.get(CheckoutSession, session_id))
    client = stripe_client(localstripe_url)
    intent = client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": currency,
            "customer": stripe_customer,
            "payment_method": pm_id,
            "metadata": purchases.intent_metadata(session_id),
        }
    )
    try:
        client.v1.payment_intents.confirm(intent.id)
    except stripe.CardError:
        pass  # declined: the PaymentIntent stays requires_payment_method
    intent = client.v1.payment_intents.retrieve(intent.id).to_dict()
    charge = intent["latest_charge"]  # localstripe expands it
    intent["latest_charge"] = charge if isinstance(charge, str) or charge is None else charge["id"]
    return intent


def wrapped(localstripe_url, event_type: str, obj: dict) -> dict:
    """A real Stripe object in the event envelope (localstripe emits no event for it)."""
    return envelope(f"evt_{ids.new_id('x')[2:]}", event_type, obj, created=int(time.time()))


def charge_failed(localstripe_url, charge_id: str) -> dict:
    charge = stripe_client(localstripe_url).v1.charges.retrieve(charge_id).to_dict()
    return wrapped(localstripe_url, "charge.failed", charge)


def state(rt, session_id: str) -> dict:
    """The session, its purchase, invoice, payments (by charge), redemption and event rows."""
    with rt.billing.unit() as s:
        session = s.get(CheckoutSession, session_id)
        purchase = s.get(Purchase, session.purchase_id) if session.purchase_id else None
        invoice = (
            s.exec(select(Invoice).where(Invoice.purchase_id == purchase.id)).one()
            if purchase
            else None
        )
        payments = list(
            s.exec(select(Payment).where(Payment.purchase_id == purchase.id)) if purchase else []
        )
        objects = [p.id for p in payments] + ([purchase.id] if purchase else [])
        events = sorted(
            (e.type, e.object_id)
            for e in s.exec(select(Event).where(Event.object_id.in_(objects or [""])))
        )
        redemption = (
            s.get(DiscountRedemption, session.discount_redemption_id)
            if session.discount_redemption_id
            else None
        )
    return {
        "session": session,
        "purchase": purchase,
        "invoice": invoice,
        "payments": {p.stripe_charge_id: p for p in payments},
        "events": events,
        "redemption": redemption,
    }


def pdf_text(rt, url: str) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(rt.documents.read(url)))
    return "\n".join(page.extract_text() for page in reader.pages)


def handler_results(rt) -> list[str]:
    """The `result` of every Stripe handler run (all completed), sorted."""
    runs = [r for r in rt.store.list_runs(limit=500) if r["task"].startswith("stripe-")]
    unfinished = [
        (r["task"], r["status"], [a.get("error") for a in rt.store.attempts(r["id"])])
        for r in runs
        if r["status"] != "completed"
    ]
    assert unfinished == []
    return sorted(json.loads(r["result"])["result"] for r in runs)


def smtp_env(port: int) -> dict:
    return {
        "FLOWJOBS_MAIL_TRANSPORT": "smtp",
        "FLOWJOBS_MAIL_HOST": "127.0.0.1",
        "FLOWJOBS_MAIL_PORT": str(port),
    }


def test_a_one_time_purchase_is_paid_once_from_a_file_and_over_http(
    served, smtp, localstripe_url, tmp_path
):
    """`payment_intent.succeeded` of two checkout sessions (one with a 10 % `once` discount),
    one replayed as a file, one delivered over HTTP: each gets its purchase (`paid`), its
    invoice (`paid`, $44.10 after the discount, $49.00 without), one succeeded payment keyed by
    the charge, the invoice PDF and the receipt PDF, the customer's receipt (both PDFs attached)
    and the organisation's payment-succeeded email (to the member who wants it), and the
    `payment.succeeded` and `purchase.completed` rows; the `once` discount is fully redeemed.
    The same events again — a duplicate file, a duplicate HTTP delivery, and a forced replay
    that runs the handler a second time — add no payment, no email, no event row."""
    rt, env, base, proc = served
    port, mail = smtp()
    # live sessions paid by live-mode events (a live configuration: localstripe takes any key)
    env = {**env, "FLOWJOBS_STRIPE_MODE": "live", "FLOWJOBS_STRIPE_LIVE_API_KEY": "sk_live_fj"}
    discounted, customer_a = open_checkout(rt, livemode=True, discount=(10, "percent", "once"))
    plain, customer_b = open_checkout(rt, livemode=True)
    intent_a = pay(rt, localstripe_url, discounted, customer_a, VISA)
    intent_b = pay(rt, localstripe_url, plain, customer_b, VISA)
    assert (intent_a["status"], intent_a["amount"]) == ("succeeded", 4410)
    assert (intent_b["status"], intent_b["amount"]) == ("succeeded", 4900)
    event_a = event_for(localstripe_url, "payment_intent.succeeded", intent_a["id"])
    event_b = event_for(localstripe_url, "payment_intent.succeeded", intent_b["id"])
    event_a["livemode"] = event_b["livemode"] = True

    replay_file(env, tmp_path, "succeeded-a.json", event_a)
    deliver(base, event_b, live=True)
    work(env, **smtp_env(port))

    for session_id, intent, amount in ((discounted, intent_a, 4410), (plain, intent_b, 4900)):
        got = state(rt, session_id)
        [payment] = got["payments"].values()
        assert payment.stripe_charge_id == intent["latest_charge"]
        assert (payment.status, payment.amount, payment.stripe_payment_intent_id) == (
            "succeeded",
            amount,
            intent["id"],
        )
        assert (got["session"].status, got["purchase"].status, got["invoice"].status) == (
            "succeeded",
            "paid",
            "paid",
        )
        assert got["invoice"].type == "purchase" and got["purchase"].purchase_date is not None
        assert got["events"] == sorted(
            [("payment.succeeded", payment.id), ("purchase.completed", got["purchase"].id)]
        )
        invoice_pdf = pdf_text(rt, got["invoice"].pdf_url)
        receipt_pdf = pdf_text(rt, payment.receipt_url)
        money = f"${amount / 100:.2f}"
        for doc in (invoice_pdf, receipt_pdf):
            assert got["invoice"].invoice_number in doc and "Field Guide" in doc and money in doc
        assert "Invoice" in invoice_pdf and "Amount due\n$0.00" in invoice_pdf
        assert "Receipt" in receipt_pdf and payment.id in receipt_pdf
        assert f"Amount paid\n{money}" in receipt_pdf
        if amount == 4410:
            assert "Discount (LAUNCH)" in invoice_pdf and "-$4.90" in invoice_pdf
            assert got["redemption"].fully_redeemed and got["redemption"].purchase_id
    by_task = received(mail.messages)
    receipts = by_task["send-customer-payment-succeeded-notification"]
    assert len(receipts) == 2 and all(rcpts == ["ada@example.com"] for rcpts, _ in receipts)
    for _, msg in receipts:
        assert msg["Subject"].startswith("Acme Analytics Order Receipt: #")
        names = sorted(a.get_filename() for a in msg.iter_attachments())
        number = msg["Subject"].split("#")[1]
        assert names == [f"{number}-receipt.pdf", f"{number}.pdf"]
    org_mails = by_task["send-organization-payment-succeeded-notification"]
    assert [rcpts for rcpts, _ in org_mails] == [[MEMBERS[0]]] * 2  # quiet@ turned it off
    assert sorted("$44.10" in text(m) for _, m in org_mails) == [False, True]
    assert set(by_task) == {
        "send-customer-payment-succeeded-notification",
        "send-organization-payment-succeeded-notification",
    }
    count = len(mail.messages)

    again = flowjobs("replay-event", str(tmp_path / "succeeded-a.json"), "--json", env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["duplicate"] is True
    assert deliver(base, event_b, live=True)  # a redelivery: 200, stored as a duplicate
    forced = flowjobs(
        "replay-event", str(tmp_path / "succeeded-a.json"), "--force", "--json", env=env
    )
    assert forced.returncode == 0, forced.stderr
    work(env, **smtp_env(port))
    results = handler_results(rt)
    assert results == ["succeeded", "succeeded", "unchanged"]  # the forced replay: nothing new
    assert len(mail.messages) == count
    for session_id in (discounted, plain):
        got = state(rt, session_id)
        assert len(got["payments"]) == 1 and len(got["events"]) == 2
    assert proc.poll() is None


def test_a_declined_checkout_payment_then_its_canceled_payment_intent(
    served, smtp, localstripe_url, tmp_path
):
    """A card declined at checkout (`payment_intent.payment_failed`, real, as a file;
    `charge.failed` for its charge over HTTP): one `failed` payment with Stripe's reason, the
    purchase `pending` (the customer may pay again), its invoice `open`, the session `failed`,
    the customer's "Your Payment Failed" and the organisation's payment-failed email once, one
    `payment.failed` row. The PaymentIntent then canceled (`payment_intent.canceled`): the
    purchase is `failed`; still one payment, one `payment.failed`, no further email. A test-mode
    session: no receipt and no success email anywhere."""
    rt, env, base, proc = served
    port, mail = smtp()
    session_id, customer = open_checkout(rt)
    intent = pay(rt, localstripe_url, session_id, customer, DECLINING)
    assert intent["status"] == "requires_payment_method"
    failed = event_for(localstripe_url, "payment_intent.payment_failed", intent["id"])

    deliver(base, charge_failed(localstripe_url, intent["latest_charge"]))
    replay_file(env, tmp_path, "payment-failed.json", failed)
    work(env, **smtp_env(port))

    got = state(rt, session_id)
    [payment] = got["payments"].values()
    assert (payment.status, payment.failure_code, payment.amount) == (
        "failed",
        "card_declined",
        PRICE,
    )
    assert payment.failure_message == "Your card was declined."
    assert (got["session"].status, got["purchase"].status, got["invoice"].status) == (
        "failed",
        "pending",
        "open",
    )
    assert got["events"] == [("payment.failed", payment.id)]
    by_task = received(mail.messages)
    assert set(by_task) == {
        "send-customer-payment-failed-notification",
        "send-organization-payment-failed-notification",
    }
    [(rcpts, customer_mail)] = by_task["send-customer-payment-failed-notification"]
    assert rcpts == ["ada@example.com"] and customer_mail["Subject"] == "[TEST] Your Payment Failed"
    body = text(customer_mail)
    assert "Your card was declined." in body and got["invoice"].invoice_number in body
    [(rcpts, org_mail)] = by_task["send-organization-payment-failed-notification"]
    assert rcpts == [MEMBERS[0]] and "Ada Lovelace" in org_mail["Subject"]
    count = len(mail.messages)

    canceled = stripe_client(localstripe_url).v1.payment_intents.cancel(intent["id"]).to_dict()
    replay_file(
        env,
        tmp_path,
        "canceled.json",
        wrapped(localstripe_url, "payment_intent.canceled", canceled),
    )
    work(env, **smtp_env(port))
    got = state(rt, session_id)
    assert [p.status for p in got["payments"].values()] == ["failed"]
    assert (got["session"].status, got["purchase"].status) == ("failed", "failed")
    assert got["events"] == [("payment.failed", payment.id)]
    assert len(mail.messages) == count
    assert handler_results(rt) == ["failed", "unchanged", "unchanged"]
    assert proc.poll() is None


def test_charge_failed_after_succeeded_never_undoes_the_payment(
    served, smtp, localstripe_url, tmp_path
):
    """The customer's first card is declined, the second pays. `payment_intent.succeeded`
    arrives first (over HTTP); then, out of order, the declined attempt's `charge.failed` (a
    file) and a `charge.failed` naming the succeeded charge itself (over HTTP): the succeeded
    payment stays `succeeded`, the invoice and purchase stay `paid`, the session `succeeded`;
    the declined attempt is recorded as a `failed` payment, and no payment-failed email goes
    out for a purchase that is paid."""
    rt, env, base, proc = served
    port, mail = smtp()
    session_id, customer = open_checkout(rt)
    declined = pay(rt, localstripe_url, session_id, customer, DECLINING)
    paid = pay(rt, localstripe_url, session_id, customer, VISA)
    assert (declined["status"], paid["status"]) == ("requires_payment_method", "succeeded")

    deliver(base, event_for(localstripe_url, "payment_intent.succeeded", paid["id"]))
    work(env, **smtp_env(port))
    replay_file(
        env, tmp_path, "late.json", charge_failed(localstripe_url, declined["latest_charge"])
    )
    bogus = charge_failed(localstripe_url, paid["latest_charge"])
    bogus["data"]["object"].update(
        status="failed", failure_code="card_declined", failure_message="Your card was declined."
    )
    deliver(base, bogus)
    work(env, **smtp_env(port))

    got = state(rt, session_id)
    payments = got["payments"]
    good, bad = payments[paid["latest_charge"]], payments[declined["latest_charge"]]
    assert (good.status, good.failure_code) == ("succeeded", None)
    assert (bad.status, bad.failure_code) == ("failed", "card_declined")
    assert (got["session"].status, got["purchase"].status, got["invoice"].status) == (
        "succeeded",
        "paid",
        "paid",
    )
    assert got["events"] == sorted(
        [
            ("payment.succeeded", good.id),
            ("payment.failed", bad.id),
            ("purchase.completed", got["purchase"].id),
        ]
    )
    by_task = received(mail.messages)
    assert "send-customer-payment-failed-notification" not in by_task
    assert "send-organization-payment-failed-notification" not in by_task
    assert len(by_task["send-organization-payment-succeeded-notification"]) == 1
    assert handler_results(rt) == ["failed", "succeeded", "unchanged"]
    assert proc.poll() is None


def test_discount_redemptions_advance_by_duration(make_runtime, localstripe_url):
    """§8.2: a paid purchase advances its discount redemption — `once` is fully redeemed,
    `number_of_payments` when the purchase's succeeded payments reach N (1: yes; 2: not after
    one), `forever` never. The amounts charged are the discounted ones."""
    rt = make_runtime(**stripe_sections(localstripe_url))
    cases = {
        "once": ((500, "fixed", "once"), None, True),
        "n1": ((20, "percent", "number_of_payments"), 1, True),
        "n2": ((20, "percent", "number_of_payments"), 2, False),
        "forever": ((500, "fixed", "forever"), None, False),
    }
    sessions = {}
    for name, (discount, n, _) in cases.items():
        session_id, customer = open_checkout(rt, discount=discount, number_of_payments=n)
        intent = pay(rt, localstripe_url, session_id, customer, VISA)
        assert intent["amount"] == (4400 if discount[1] == "fixed" else 3920)
        event = event_for(localstripe_url, "payment_intent.succeeded", intent["id"])
        replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(event).encode()))
        sessions[name] = session_id
    drain(rt)
    for name, (_, _, redeemed) in cases.items():
        got = state(rt, sessions[name])
        assert got["purchase"].status == "paid" and got["invoice"].status == "paid", name
        assert got["redemption"].fully_redeemed is redeemed, name


def test_a_setup_intent_of_a_one_time_session_creates_nothing(make_runtime, localstripe_url):
    """One-time sessions are paid by a PaymentIntent: a `setup_intent.succeeded` for one (a
    `product` session of a single-payment price) is reported as ignored — no subscription, no
    purchase, the session still open — instead of being refused as unsupported."""
    from flowjobs.billing.models import Subscription

    rt = make_runtime(**stripe_sections(localstripe_url))
    session_id, customer = open_checkout(rt)
    client = stripe_client(localstripe_url)
    intent = client.v1.setup_intents.create(params={"customer": customer})
    card = {"number": VISA, "exp_month": 7, "exp_year": 2031, "cvc": "123"}
    intent = client.v1.setup_intents.confirm(
        intent.id, params={"payment_method_data": {"type": "card", "card": card}}
    )
    with rt.billing.unit() as s:
        s.get(CheckoutSession, session_id).stripe_setup_intent_id = intent.id
    event = wrapped(localstripe_url, "setup_intent.succeeded", intent.to_dict())
    replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(event).encode()))
    drain(rt)
    [run] = [r for r in rt.store.list_runs(limit=100) if r["task"] == "setup-intent-succeeded"]
    assert run["status"] == "completed" and json.loads(run["result"])["result"] == "ignored"
    got = state(rt, session_id)
    assert got["session"].status == "open" and got["purchase"] is None
    with rt.billing.unit() as s:
        assert s.exec(select(Subscription)).all() == []
    assert get(rt, CheckoutSession, session_id).purchase_id is None


def test_a_purchase_session_pays_the_purchase_it_names(make_runtime, localstripe_url):
    """A `purchase` checkout session names its purchase (made when the checkout opened): the
    payment is recorded on that purchase, not a new one; quantity 3 at $49.00 less a $5.00
    fixed `once` discount: one invoice line, $142.00 charged and paid. Its `payment.succeeded`
    and `purchase.completed` reach the organisation's webhook endpoint, signed (a real
    receiver on loopback verifying with its own implementation)."""
    from flowjobs.outbound import endpoints
    from tests.outbound_receiver import Receiver, start, verify

    rt = make_runtime(**stripe_sections(localstripe_url))
    session_id, customer = open_checkout(
        rt, kind="purchase", quantity=3, discount=(500, "fixed", "once")
    )
    receiver = Receiver()
    server, thread = start(receiver)
    with rt.billing.unit() as s:
        org_id = s.get(CheckoutSession, session_id).organization_id
    endpoint = endpoints.add(rt.billing, org_id, receiver.url, livemode=False)
    before = get(rt, CheckoutSession, session_id).purchase_id
    intent = pay(rt, localstripe_url, session_id, customer, VISA)
    assert intent["amount"] == 3 * PRICE - 500
    event = event_for(localstripe_url, "payment_intent.succeeded", intent["id"])
    replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(event).encode()))
    drain(rt)
    got = state(rt, session_id)
    assert got["purchase"].id == before and got["purchase"].status == "paid"
    assert got["invoice"].status == "paid" and got["invoice"].subtotal == 14200
    assert [p.amount for p in got["payments"].values()] == [14200]
    assert got["redemption"].fully_redeemed
    with rt.billing.unit() as s:
        assert len(s.exec(select(Purchase)).all()) == 1
        from flowjobs.billing.totals import invoice_totals

        money = invoice_totals(s, got["invoice"].id)
    assert (money.base, money.discount, money.discount_code, money.due) == (14700, 500, "LAUNCH", 0)
    try:
        requests = receiver.wait_for(2)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    now = rt.clock.now_ms() / 1000
    assert all(verify(endpoint.secret, r.headers, r.body, now=now) for r in requests)
    delivered = sorted((r.json["type"], r.json["data"]["id"]) for r in requests)
    [payment_id] = [p.id for p in got["payments"].values()]
    assert delivered == [("payment.succeeded", payment_id), ("purchase.completed", before)]


def test_demo_seed_pays_one_time_purchases_whose_events_make_them_paid(
    make_runtime, localstripe_url
):
    """`flowjobs demo seed --purchases 2` (a subprocess): two checkout sessions for one-time
    prices, paid at localstripe with the checkout metadata; their `payment_intent.succeeded`
    events make the purchases and invoices paid, with receipts rendered (the first with its
    10 % discount)."""
    from tests.cli_helpers import cli_env

    rt = make_runtime(**stripe_sections(localstripe_url))
    env = cli_env(
        rt.db.url,
        FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_flowjobs",
        FLOWJOBS_STRIPE_API_BASE=localstripe_url,
    )
    seeded = flowjobs(
        "demo",
        "seed",
        "--customers",
        "3",
        "--declining",
        "1",
        "--purchases",
        "2",
        "--json",
        env=env,
    )
    assert seeded.returncode == 0, seeded.stderr
    seeded = json.loads(seeded.stdout)
    assert len(seeded["checkoutSessions"]) == len(seeded["paymentIntents"]) == 2
    refused = flowjobs(
        "demo", "seed", "--customers", "3", "--declining", "2", "--purchases", "2", env=env
    )
    assert refused.returncode == 2 and "--purchases" in refused.stderr
    for intent_id in seeded["paymentIntents"]:
        event = event_for(localstripe_url, "payment_intent.succeeded", intent_id)
        replay(rt.billing, rt.settings, read_incoming(rt.settings, json.dumps(event).encode()))
    drain(rt)
    amounts = []
    for session_id in seeded["checkoutSessions"]:
        got = state(rt, session_id)
        [payment] = got["payments"].values()
        assert (got["purchase"].status, got["invoice"].status, payment.status) == (
            "paid",
            "paid",
            "succeeded",
        )
        assert payment.receipt_url and rt.documents.read(payment.receipt_url).startswith(b"%PDF")
        amounts.append(payment.amount)
    assert amounts == [26910, 4900]  # Onboarding Workshop less 10 %, Field Guide


def test_the_stale_payment_sweep_settles_a_checkout_payment_as_its_webhook_would(
    make_runtime, localstripe_url, clock
):
    """A checkout payment left `processing` (a bank debit: its `processing` event came, the
    `succeeded` one never did) and paid at Stripe: `fail-stale-payments` records it through
    the purchase path — payment, invoice and purchase paid, the discount used, the invoice PDF
    asked for — not just the payment's status (which left the purchase pending for good, and a
    late webhook then found nothing changed, so nothing followed)."""
    from dataclasses import replace

    from flowjobs.billing.stale import fail_stale_payments
    from flowjobs.billing.types import utc_from_ms

    rt = make_runtime(**stripe_sections(localstripe_url))
    session_id, customer = open_checkout(rt, discount=(500, "fixed", "once"))
    intent = pay(rt, localstripe_url, session_id, customer, VISA)
    assert intent["status"] == "succeeded"
    b = rt.billing
    charge = purchases.Charge.from_stripe(b.gateway.retrieve_charge(False, intent["latest_charge"]))
    with b.unit() as s:  # what a `payment_intent.processing` event recorded
        session = s.get(CheckoutSession, session_id)
        pending = replace(charge, status="pending")
        assert purchases._record(b, s, session, intent["id"], "processing", pending)[
            "paymentStatus"
        ] == ("processing")
    before = state(rt, session_id)
    assert (before["purchase"].status, before["invoice"].status) == ("pending", "open")
    assert before["redemption"].fully_redeemed is False

    clock.advance(7 * 3600)
    report = fail_stale_payments(b, utc_from_ms(clock.now_ms()))
    assert report.errors == [] and len(report.settled) == 1
    after = state(rt, session_id)
    assert [p.status for p in after["payments"].values()] == ["succeeded"]
    assert (after["purchase"].status, after["invoice"].status) == ("paid", "paid")
    assert after["redemption"].fully_redeemed is True
    assert len(rt.store.list_runs(task="generate-invoice-pdf")) == 1


def test_a_charge_of_another_mode_or_currency_or_refunded_does_not_pay_the_purchase(
    make_runtime, localstripe_url
):
    """What the event names must be what the session sells: a test-mode charge paid a live
    purchase; a JPY 4900 charge paid a USD 49.00 one; and a charge refunded in full before its
    event was handled (Stripe keeps it `succeeded`) made its purchase paid."""
    rt = make_runtime(**stripe_sections(localstripe_url))

    def record(session_id, intent, livemode=False):
        return purchases.record_checkout_charge(
            rt.billing,
            session_id,
            intent_id=intent["id"],
            intent_status=intent["status"],
            charge_id=intent["latest_charge"],
            livemode=livemode,
        )

    live, customer = open_checkout(rt, livemode=True)
    got = record(live, pay(rt, localstripe_url, live, customer, VISA))
    assert got["result"] == "ignored"
    assert f"a test-mode event names live-mode checkout session {live}" in got["detail"]
    assert state(rt, live)["purchase"] is None

    yen, customer = open_checkout(rt)
    with pytest.raises(BillingError, match="is in JPY, but checkout session .* sells in USD"):
        record(yen, pay(rt, localstripe_url, yen, customer, VISA, currency="jpy"))
    assert state(rt, yen)["payments"] == {}

    refunded, customer = open_checkout(rt)
    intent = pay(rt, localstripe_url, refunded, customer, VISA)
    stripe_client(localstripe_url).v1.refunds.create(params={"charge": intent["latest_charge"]})
    assert record(refunded, intent)["result"] == "refunded"
    after = state(rt, refunded)
    [payment] = after["payments"].values()
    assert (payment.status, payment.refunded, payment.refunded_amount) == ("refunded", True, PRICE)
    assert (after["purchase"].status, after["session"].status) == ("refunded", "succeeded")
    assert after["invoice"].status != "paid" and after["events"] == []
    assert rt.store.list_runs(task="send-customer-payment-succeeded-notification") == []
    assert record(refunded, intent)["result"] == "unchanged"  # again: nothing new
