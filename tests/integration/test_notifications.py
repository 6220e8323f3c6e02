"""The sixteen notification emails, delivered to a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
import io
import json
import socket
from datetime import timedelta
from email import policy

import pypdf
import pytest

from flowjobs import ids
from flowjobs.billing import setup
from flowjobs.billing.models import Invoice, InvoiceLineItem, Organization, Payment, Subscription
from flowjobs.billing.types import utc_from_ms
from tests.billing_helpers import drain


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collect:
    def __init__(
        self,
        refuse: str | None = None,
        temporary_failures: int = 0,
        greylist: int = 0,
        quit_reply: str | None = None,
    ):
        self.messages = []
        self.refuse = refuse
        self.temporary_failures = temporary_failures
        self.greylist = greylist  # RCPT answers "450 greylisted" this many times
        self.quit_reply = quit_reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.greylist:
            self.greylist -= 1
            return "450 4.2.0 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        from aiosmtpd.smtp import MISSING

        return self.quit_reply or MISSING

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return self.refuse
        if self.temporary_failures:
            self.temporary_failures -= 1
            return "451 4.3.0 try again later"
        self.messages.append(
            (envelope.rcpt_tos, email.message_from_bytes(envelope.content, policy=policy.default))
        )
        return "250 OK"


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    servers = []

    def start(handler=None):
        handler = handler or Collect()
        controller = Controller(handler, hostname="127.0.0.1", port=free_port())
        controller.start()
        servers.append(controller)
        return controller.port, handler

    yield start
    for controller in servers:
        controller.stop()


def mail_sections(port, **extra):
    return {
        "mail": {
            "transport": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "retries": 1,
            "timeout": "5s",
            "app_url": "https://app.example",
            **extra,
        }
    }


def world(rt, livemode=True):
    """An organisation with three members, a customer with a paid invoice and a subscription."""
    b = rt.billing
    now = utc_from_ms(rt.clock.now_ms())
    with b.unit() as s:
        org = setup.organization(
            s, "Łódź Analytics", currency="EUR", contact_email="hi@lodz.example"
        )
        setup.member(s, org, "owner@lodz.example")
        setup.member(
            s,
            org,
            "quiet@lodz.example",
            role="member",
            preferences={"paymentFailed": False, "testModeNotifications": False},
        )
        setup.member(
            s, org, "ops@lodz.example", role="member", preferences={"subscriptionCreated": False}
        )
        cust = setup.customer(
            s, org, email="ada@example.com", name="Ada Lovelace", livemode=livemode
        )
        method = setup.card(s, cust, stripe_payment_method_id="pm_x", last4="4242")
        price = setup.plan(s, org, "Pro", 4900, livemode=livemode)
        sub, period, _ = setup.subscription(s, cust, price, method, start=now)
        sub.canceled_at = now
        invoice = Invoice(
            id=ids.new_id("inv"),
            livemode=livemode,
            invoice_number="B16B00B-00000",
            invoice_date=now,
            billing_period_id=period.id,
            customer_id=cust.id,
            organization_id=org.id,
            status="paid",
            subscription_id=sub.id,
            currency="EUR",
            subtotal=4900,
            tax_amount=0,
            type="subscription",
        )
        s.add(invoice)
        s.add(
            InvoiceLineItem(
                id=ids.new_id("inv_li"),
                livemode=livemode,
                invoice_id=invoice.id,
                quantity=1,
                description="Pro",
                price=4900,
            )
        )
        payment = Payment(
            id=ids.new_id("pym"),
            livemode=livemode,
            invoice_id=invoice.id,
            amount=4900,
            payment_method="card",
            currency="EUR",
            status="succeeded",
            charge_date=now,
            organization_id=org.id,
            customer_id=cust.id,
            subscription_id=sub.id,
            payment_method_id=method.id,
            billing_period_id=period.id,
            failure_message="Your card was declined.",
        )
        s.add(payment)
        return {
            "org": org.id,
            "customer": cust.id,
            "sub": sub.id,
            "payment": payment.id,
            "livemode": livemode,
            "retry": int((now + timedelta(days=3)).timestamp() * 1000),
        }


def payloads(w):
    data = {
        "organizationId": w["org"],
        "customerId": w["customer"],
        "paymentId": w["payment"],
        "amount": 4900,
        "currency": "EUR",
        "invoiceNumber": "B16B00B-00000",
        "livemode": w["livemode"],
    }
    adjusted = {
        "subscriptionId": w["sub"],
        "customerId": w["customer"],
        "organizationId": w["org"],
        "adjustmentType": "upgrade",
        "previousItems": [{"name": "Pro", "unitPrice": 4900, "quantity": 1}],
        "newItems": [{"name": "Team", "unitPrice": 9900, "quantity": 1}],
        "prorationAmount": 2500,
        "effectiveDate": 1800000000000,
    }
    return {
        "send-customer-payment-succeeded-notification": {"paymentId": w["payment"]},
        "send-customer-payment-failed-notification": {
            "paymentId": w["payment"],
            "retryDate": w["retry"],
        },
        "send-customer-subscription-created-notification": {
            "customerId": w["customer"],
            "subscriptionId": w["sub"],
            "organizationId": w["org"],
        },
        "send-customer-subscription-upgraded-notification": {
            "customerId": w["customer"],
            "newSubscriptionId": w["sub"],
            "previousSubscriptionId": w["sub"],
            "organizationId": w["org"],
        },
        "send-customer-subscription-adjusted-notification": adjusted,
        "send-customer-subscription-canceled-notification": {"subscriptionId": w["sub"]},
        "send-customer-subscription-cancellation-scheduled-notification": {
            "subscriptionId": w["sub"],
            "scheduledCancellationDate": 1800000000000,
        },
        "send-customer-trial-expired-notification": {"subscriptionId": w["sub"]},
        "send-organization-payment-succeeded-notification": {"paymentData": data},
        "send-organization-payment-failed-notification": {
            "paymentData": {**data, "failureReason": "card_declined"}
        },
        "send-organization-subscription-created-notification": {"subscription": {"id": w["sub"]}},
        "send-organization-subscription-adjusted-notification": {**adjusted, "currency": "EUR"},
        "send-organization-subscription-canceled-notification": {"subscription": {"id": w["sub"]}},
        "send-organization-subscription-cancellation-scheduled-notification": {
            "subscription": {"id": w["sub"]},
            "scheduledCancellationDate": 1800000000000,
        },
        "send-organization-payouts-enabled-notification": {"organizationId": w["org"]},
        "send-organization-onboarding-completed-notification": {"organizationId": w["org"]},
    }


CUSTOMER = ["ada@example.com"]
ALL = ["owner@lodz.example", "quiet@lodz.example", "ops@lodz.example"]
EXPECTED = {  # task: (recipients, subject, facts in the plain-text body)
    "send-customer-payment-succeeded-notification": (
        CUSTOMER,
        "Łódź Analytics Order Receipt: #B16B00B-00000",
        [
            "Your Order is Confirmed",
            "Payment total: €49.00",
            "Pro  1 x €49.00 = €49.00",
            "Total: €49.00",
        ],
    ),
    "send-customer-payment-failed-notification": (
        CUSTOMER,
        "Your Payment Failed",
        [
            "Payment Unsuccessful",
            "Your card was declined.",
            "We will try again on January 18, 2027.",
            "Amount: €49.00",
        ],
    ),
    "send-customer-subscription-created-notification": (
        CUSTOMER,
        "Your Subscription is Confirmed",
        [
            "Plan: Pro",
            "Price: €49.00 / month",
            "Card ending 4242",
            "Next billing date: February 15, 2027",
        ],
    ),
    "send-customer-subscription-upgraded-notification": (
        CUSTOMER,
        "Your Subscription is Confirmed",
        ["Previous plan: Pro (€49.00 / month)"],
    ),
    "send-customer-subscription-adjusted-notification": (
        CUSTOMER,
        "Your Subscription has been Updated",
        ["Proration: €25.00", "Team  1 x €99.00 = €99.00"],
    ),
    "send-customer-subscription-canceled-notification": (
        CUSTOMER,
        "Subscription Canceled: Your Pro subscription has been canceled",
        ["Cancellation date: January 15, 2027"],
    ),
    "send-customer-subscription-cancellation-scheduled-notification": (
        CUSTOMER,
        "Cancellation Scheduled: Your Pro subscription will be canceled on January 15, 2027",
        ["Cancellation date: January 15, 2027"],
    ),
    "send-customer-trial-expired-notification": (
        CUSTOMER,
        "Action Required: Update Your Payment Method",
        ["Add Payment Method: https://app.example/billing-portal/"],
    ),
    "send-organization-payment-succeeded-notification": (
        ALL,
        "Successful payment from Ada Lovelace!",
        ["Amount: €49.00", "Invoice #: B16B00B-00000"],
    ),
    "send-organization-payment-failed-notification": (
        ["owner@lodz.example", "ops@lodz.example"],
        "Payment Failed from Ada Lovelace",
        [
            "Status: Failed",
            "Reason: card_declined",
            "View in Dashboard: https://app.example/customers/",
        ],
    ),
    "send-organization-subscription-created-notification": (
        ["owner@lodz.example", "quiet@lodz.example"],
        "New Subscription: Ada Lovelace subscribed to Pro",
        ["Price: €49.00"],
    ),
    "send-organization-subscription-adjusted-notification": (
        ALL,
        "Subscription Updated - Ada Lovelace",
        ["Proration: €25.00"],
    ),
    "send-organization-subscription-canceled-notification": (
        ALL,
        "Subscription Canceled: Ada Lovelace canceled Pro",
        ["Canceled on: January 15, 2027"],
    ),
    "send-organization-subscription-cancellation-scheduled-notification": (
        ALL,
        "Cancellation Scheduled: Ada Lovelace scheduled cancellation for Pro on January 15, 2027",
        [],
    ),
    "send-organization-payouts-enabled-notification": (
        ALL,
        "Payouts Enabled for Łódź Analytics",
        ["Payouts are now enabled"],
    ),
    "send-organization-onboarding-completed-notification": (
        ALL,
        "Live payments pending review for Łódź Analytics",
        ["finished Stripe onboarding"],
    ),
}


def test_all_sixteen_emails_reach_the_smtp_server(make_runtime, smtp, tmp_path):
    port, inbox = smtp()
    rt = make_runtime(documents={"dir": str(tmp_path / "docs")}, **mail_sections(port))
    w = world(rt)
    with rt.billing.unit() as s:  # cancellation-scheduled emails go only while one is scheduled
        sub = s.get(Subscription, w["sub"])
        sub.status, sub.cancel_scheduled_at = "cancellation_scheduled", utc_from_ms(1800000000000)
    for task, payload in payloads(w).items():
        rt.trigger(task, payload)
    drain(rt)
    by_task = {str(msg["X-Flowjobs-Task"]).strip(): (rcpts, msg) for rcpts, msg in inbox.messages}
    assert sorted(by_task) == sorted(EXPECTED)
    for task, (recipients, subject, facts) in EXPECTED.items():
        rcpts, msg = by_task[task]
        assert sorted(rcpts) == sorted(recipients), task
        assert msg["Subject"] == subject, task
        assert str(msg["Date"]).endswith(" +0000"), msg["Date"]  # UTC, said as such
        text = msg.get_body(preferencelist=("plain",)).get_content()
        html = msg.get_body(preferencelist=("html",)).get_content()
        for fact in facts:
            assert fact in text, (task, fact)
        assert html.startswith("<!doctype html>") and "Łódź" in html and "&lt;" not in subject
    receipt = by_task["send-customer-payment-succeeded-notification"][1]
    assert receipt["From"] == "Łódź Analytics Billing <lodz-analytics-billing@flowglad.com>"
    assert receipt["Reply-To"] == "owner@lodz.example"
    files = {part.get_filename(): part.get_content() for part in receipt.iter_attachments()}
    assert sorted(files) == ["B16B00B-00000-receipt.pdf", "B16B00B-00000.pdf"]
    invoice_text = pypdf.PdfReader(io.BytesIO(files["B16B00B-00000.pdf"])).pages[0].extract_text()
    receipt_text = (
        pypdf.PdfReader(io.BytesIO(files["B16B00B-00000-receipt.pdf"])).pages[0].extract_text()
    )
    assert "B16B00B-00000" in invoice_text and "€49.00 paid on January 15, 2027" in receipt_text
    assert (
        by_task["send-organization-payouts-enabled-notification"][1]["From"]
        == "Flowglad <notifications@flowglad.com>"
    )


def test_test_mode_emails_are_marked_and_follow_preferences(make_runtime, smtp, tmp_path):
    port, inbox = smtp()
    rt = make_runtime(documents={"dir": str(tmp_path / "docs")}, **mail_sections(port))
    w = world(rt, livemode=False)
    every = payloads(w)
    for task in (
        "send-customer-payment-succeeded-notification",
        "send-customer-payment-failed-notification",
        "send-organization-subscription-created-notification",
    ):
        rt.trigger(task, every[task])
    drain(rt)
    by_task = {str(msg["X-Flowjobs-Task"]).strip(): (rcpts, msg) for rcpts, msg in inbox.messages}
    assert (
        "send-customer-payment-succeeded-notification" not in by_task
    )  # receipts: live-mode invoices only
    assert (
        by_task["send-customer-payment-failed-notification"][1]["Subject"]
        == "[TEST] Your Payment Failed"
    )
    rcpts, msg = by_task["send-organization-subscription-created-notification"]
    assert rcpts == [
        "owner@lodz.example"
    ]  # quiet@ wants no test-mode mail; ops@ no subscription mail
    assert msg["Subject"].startswith("[TEST] New Subscription")


def test_smtp_down_is_retried_then_fails_with_a_clear_error(make_runtime, clock, tmp_path):
    rt = make_runtime(**mail_sections(free_port()))
    w = world(rt)
    run = rt.trigger(
        "send-customer-payment-failed-notification", {"paymentId": w["payment"], "retryDate": None}
    )
    waited = 0.0
    for _ in range(10):  # 30 s doubling to an hour: a mail server's restart is ridden out
        drain(rt)
        row = rt.store.get_run(run.id)
        if row["status"] == "failed":
            break
        waited += row["run_at"] / 1000 - clock.now_ms() / 1000
        clock.set(row["run_at"])
    result = rt.store.get_run(run.id)
    assert result["status"] == "failed" and result["attempt"] == 10
    assert 2.5 * 3600 < waited < 3.5 * 3600  # it gave up after ~35 s
    assert "cannot send through SMTP server 127.0.0.1" in result["error"]


def test_a_permanent_5xx_fails_at_once_and_a_4xx_is_retried(make_runtime, smtp, clock):
    port, _ = smtp(Collect(refuse="550 5.1.1 mailbox unavailable"))
    rt = make_runtime(**mail_sections(port))
    w = world(rt)
    run = rt.trigger(
        "send-customer-payment-failed-notification", {"paymentId": w["payment"], "retryDate": None}
    )
    drain(rt)
    result = rt.store.get_run(run.id)
    assert (result["status"], result["attempt"]) == ("failed", 1)
    assert "refused the message: 550" in result["error"]

    port, flaky = smtp(Collect(temporary_failures=1))
    rt2 = make_runtime(**mail_sections(port))  # the same database, another SMTP server
    run2 = rt2.trigger("send-customer-trial-expired-notification", {"subscriptionId": w["sub"]})
    drain(rt2)
    assert rt2.store.get_run(run2.id)["status"] == "completed" and len(flaky.messages) == 1


def test_recipients_refused_for_now_are_tried_again_by_the_run_not_given_up(
    make_runtime, smtp, clock
):
    """Greylisting answers RCPT with 450: the email used to be given up at once, as refused."""
    port, server = smtp(Collect(greylist=3))  # the first attempt's two tries, then one more
    rt = make_runtime(**mail_sections(port))
    w = world(rt)
    run = rt.trigger("send-customer-trial-expired-notification", {"subscriptionId": w["sub"]})
    drain(rt)
    first = rt.store.get_run(run.id)
    assert first["status"] == "retrying", first
    assert (
        "asked to try the recipients later: ada@example.com: 450 4.2.0 greylisted"
        in (first["error"])
    )
    clock.advance(120)
    drain(rt)
    done = rt.store.get_run(run.id)
    assert (done["status"], done["attempt"]) == ("completed", 2)
    assert [rcpts for rcpts, _ in server.messages] == [["ada@example.com"]]


class GreylistOne(Collect):
    """Defers one address (RCPT 450) once, and takes the others."""

    def __init__(self, address: str):
        super().__init__()
        self.address = address

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self.address and self.address:
            self.address = ""
            return "450 4.2.0 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_member_deferred_while_the_others_are_sent_to_gets_the_email_later_once(
    make_runtime, smtp, clock
):
    """The server deferred one member (greylisting) and took the message for the others: the
    email was logged as not sent to them, and the run completed — they never got it."""
    port, server = smtp(GreylistOne("quiet@lodz.example"))
    rt = make_runtime(**mail_sections(port))
    w = world(rt)
    task = "send-organization-payment-succeeded-notification"
    run = rt.trigger(task, payloads(w)[task])
    drain(rt)
    done = rt.store.get_run(run.id)
    assert done["status"] == "completed"
    assert [sorted(rcpts) for rcpts, _ in server.messages] == [
        ["ops@lodz.example", "owner@lodz.example"]
    ]
    [resend] = rt.store.list_runs(task=task, status="delayed")
    assert json.loads(resend["payload"])["onlyTo"] == ["quiet@lodz.example"]
    assert resend["parent_id"] == run.id
    clock.advance(300)
    drain(rt)
    assert rt.store.get_run(resend["id"])["status"] == "completed"
    assert [sorted(rcpts) for rcpts, _ in server.messages][1:] == [["quiet@lodz.example"]]
    assert server.messages[1][1]["Subject"] == server.messages[0][1]["Subject"]
    assert rt.store.count_runs(task=task) == 2  # no third: each member got it once


def test_an_accepted_email_is_sent_once_when_the_server_fails_its_quit(make_runtime, smtp):
    port, server = smtp(Collect(quit_reply="421 4.3.2 shutting down"))
    rt = make_runtime(**mail_sections(port))
    w = world(rt)
    run = rt.trigger("send-customer-trial-expired-notification", {"subscriptionId": w["sub"]})
    drain(rt)
    assert rt.store.get_run(run.id)["status"] == "completed"
    assert len(server.messages) == 1  # it was sent once per try and per attempt


def test_a_name_with_a_comma_or_a_line_break_is_quoted_in_the_headers(make_runtime, smtp):
    from email.headerregistry import Address

    port, server = smtp()
    rt = make_runtime(**mail_sections(port))
    w = world(rt)
    with rt.billing.unit() as s:
        s.get(Organization, w["org"]).name = 'Acme, "Best" Inc.\r\nBcc: victim@x.example'
    rt.trigger("send-customer-trial-expired-notification", {"subscriptionId": w["sub"]})
    drain(rt)
    [(rcpts, msg)] = server.messages
    assert rcpts == ["ada@example.com"]
    [sender] = msg["From"].addresses
    assert sender == Address(
        display_name='Acme, "Best" Inc. Bcc: victim@x.example Billing',
        addr_spec="acme-best-inc-bcc-victim-x-example-billing@flowglad.com",
    )
    assert "Bcc" not in msg and "\n" not in msg["Subject"]


def test_smtp_auth_logs_in_and_a_wrong_password_is_a_clear_failure(make_runtime, smtp):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"flowjobs" and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    handler = Collect()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        rt = make_runtime(**mail_sections(controller.port, username="flowjobs", password="s3cret"))
        w = world(rt)
        ok = rt.trigger("send-customer-trial-expired-notification", {"subscriptionId": w["sub"]})
        drain(rt)
        assert rt.store.get_run(ok.id)["status"] == "completed" and len(handler.messages) == 1
        wrong = make_runtime(**mail_sections(controller.port, username="flowjobs", password="nope"))
        bad = wrong.trigger(
            "send-customer-subscription-canceled-notification", {"subscriptionId": w["sub"]}
        )
        drain(wrong)
        result = wrong.store.get_run(bad.id)
        assert result["status"] == "failed" and "535" in result["error"]
    finally:
        controller.stop()


def test_starttls_with_a_verified_certificate_then_auth(make_runtime, tmp_path):
    import ssl
    import subprocess

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    handler = Collect()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=server_tls,
        require_starttls=True,
        authenticator=lambda *a: AuthResult(success=True, handled=False),
    )
    controller.start()
    try:
        rt = make_runtime(
            **mail_sections(
                controller.port, starttls=True, ca_file=str(cert), username="u", password="p"
            )
        )
        w = world(rt)
        run = rt.trigger("send-customer-trial-expired-notification", {"subscriptionId": w["sub"]})
        drain(rt)
        assert rt.store.get_run(run.id)["status"] == "completed" and len(handler.messages) == 1
        untrusted = make_runtime(
            **mail_sections(controller.port, starttls=True)
        )  # the system CAs do not know it
        refused = untrusted.trigger(
            "send-customer-subscription-canceled-notification", {"subscriptionId": w["sub"]}
        )
        drain(untrusted)
        assert "CERTIFICATE_VERIFY_FAILED" in (untrusted.store.get_run(refused.id)["error"] or "")
    finally:
        controller.stop()


def test_organisation_payment_failed_reports_the_invoice_amount_not_the_payment_amount(
    make_runtime, smtp
):
    """Spec §7.6: the organisation's payment-failed email reports the invoice's amount (the
    line items); the failed payment was only what was still due (30.00 of 49.00)."""
    port, inbox = smtp()
    rt = make_runtime(**mail_sections(port))
    w = world(rt)
    with rt.billing.unit() as s:
        earlier = s.get(Payment, w["payment"])
        earlier.amount = 1900  # paid before
        invoice = s.get(Invoice, earlier.invoice_id)
        invoice.status = "open"
        failed = Payment(
            id=ids.new_id("pym"),
            livemode=True,
            invoice_id=invoice.id,
            amount=3000,
            payment_method="card",
            currency="EUR",
            status="failed",
            charge_date=earlier.charge_date,
            organization_id=w["org"],
            customer_id=w["customer"],
            subscription_id=w["sub"],
            failure_message="Your card was declined.",
        )
        s.add(failed)
    data = {
        "organizationId": w["org"],
        "customerId": w["customer"],
        "paymentId": failed.id,
        "amount": 3000,
        "currency": "EUR",
        "invoiceNumber": "B16B00B-00000",
        "livemode": True,
        "failureReason": "card_declined",
    }
    rt.trigger("send-organization-payment-failed-notification", {"paymentData": data})
    drain(rt)
    ((_, msg),) = inbox.messages
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "Amount: €49.00" in text and "Amount due: €30.00" in text
    assert "A payment of €30.00 from Ada Lovelace failed." in text
    assert "Pro  1 x €49.00 = €49.00" in text and "Amount paid: €19.00" in text


def test_no_order_receipt_for_a_declined_payment(make_runtime, smtp, tmp_path):
    """The customer receipt email ("Your Order is Confirmed", the receipt PDF attached) asked
    for a declined payment sends nothing and renders no receipt: the run fails at once naming
    the payment's status."""
    port, inbox = smtp()
    rt = make_runtime(documents={"dir": str(tmp_path / "docs")}, **mail_sections(port))
    w = world(rt)
    with rt.billing.unit() as s:
        payment = s.get(Payment, w["payment"])
        payment.status, payment.failure_code = "failed", "card_declined"
        s.get(Invoice, payment.invoice_id).livemode = True  # a live invoice gets its PDFs attached
    run = rt.trigger("send-customer-payment-succeeded-notification", {"paymentId": w["payment"]})
    drain(rt)
    result = rt.store.get_run(run.id)
    assert (result["status"], result["attempt"], result["error"]) == (
        "failed",
        1,
        f"AbortTaskRunError: payment {w['payment']} is failed (card_declined): a receipt is "
        "only made for a succeeded (or refunded) payment",
    )
    assert inbox.messages == []
    assert not list((tmp_path / "docs").rglob("*.pdf"))  # not the invoice's PDF either

    # a receipt stored before receipts were refused (an older flowjobs) is not sent either
    stale = rt.documents.put(f"receipts/{w['org']}/{w['payment']}/receipt_old.pdf", b"%PDF-1.4")
    with rt.billing.unit() as s:
        s.get(Payment, w["payment"]).receipt_url = stale
    again = rt.trigger(
        "send-customer-payment-succeeded-notification",
        {"paymentId": w["payment"]},
        idempotency_key="again",
    )
    drain(rt)
    assert rt.store.get_run(again.id)["status"] == "failed" and inbox.messages == []


def test_a_receipt_survives_the_invoice_pdf_being_rendered_again_meanwhile(
    make_runtime, smtp, tmp_path
):
    """The receipt email attaches the invoice PDF: the stored one, or one it renders when there
    is none. Here a `generate-invoice-pdf` run finishes whenever the email is about to read a
    stored invoice PDF, storing a newer one and removing the one about to be read. The email
    still goes, on its first attempt, with an invoice PDF attached — when it rendered the PDF
    itself (it once read its own render back and failed) and when it found one stored."""
    from flowjobs.adapters.storage import LocalStorage
    from flowjobs.documents.service import store_invoice_pdf

    port, inbox = smtp()
    rt = make_runtime(documents={"dir": str(tmp_path / "docs")}, **mail_sections(port))
    w = world(rt)
    with rt.billing.unit() as s:
        invoice_id = s.get(Payment, w["payment"]).invoice_id
    replaced: list[str] = []

    class RenderedAgainMeanwhile(LocalStorage):
        def read(self, url: str) -> bytes:
            if "/invoices/" in url:
                replaced.append(url)
                store_invoice_pdf(rt.billing, self, invoice_id)
            return super().read(url)

    rt.documents = RenderedAgainMeanwhile(tmp_path / "docs")
    for key, stored_before in (("none stored", False), ("one stored", True)):
        with rt.billing.unit() as s:
            assert (s.get(Invoice, invoice_id).pdf_url is not None) == stored_before
        run = rt.trigger(
            "send-customer-payment-succeeded-notification",
            {"paymentId": w["payment"]},
            idempotency_key=key,
        )
        drain(rt)
        assert (rt.store.get_run(run.id)["status"], rt.store.get_run(run.id)["attempt"]) == (
            "completed",
            1,
        ), key
        msg = inbox.messages[-1][1]
        files = {part.get_filename(): part.get_content() for part in msg.iter_attachments()}
        assert sorted(files) == ["B16B00B-00000-receipt.pdf", "B16B00B-00000.pdf"], key
        text = pypdf.PdfReader(io.BytesIO(files["B16B00B-00000.pdf"])).pages[0].extract_text()
        assert "B16B00B-00000" in text, key
    assert len(inbox.messages) == 2
    assert len(replaced) == 1  # the stored one was replaced under the second email


def test_a_cancellation_scheduled_email_announces_only_the_date_still_scheduled(make_runtime, smtp):
    """When its run runs, a cancellation-scheduled email whose date is no longer the
    subscription's (un-canceled and scheduled again for another date) is not sent and says why;
    the one for the date still scheduled is."""
    port, inbox = smtp()
    rt = make_runtime(**mail_sections(port))
    w = world(rt)
    with rt.billing.unit() as s:
        sub = s.get(Subscription, w["sub"])
        sub.status, sub.cancel_scheduled_at = "cancellation_scheduled", utc_from_ms(1800000000000)
    task = "send-customer-subscription-cancellation-scheduled-notification"
    earlier = 1800000000000 - 86_400_000
    moved = rt.trigger(task, {"subscriptionId": w["sub"], "scheduledCancellationDate": earlier})
    current = rt.trigger(
        task, {"subscriptionId": w["sub"], "scheduledCancellationDate": 1800000000000}
    )
    drain(rt)
    assert json.loads(rt.store.get_run(moved.id)["result"]) == {
        "sent": 0,
        "skipped": f"the cancellation on January 14, 2027 was withdrawn: subscription {w['sub']} "
        "now cancels on January 15, 2027",
    }
    assert rt.store.get_run(current.id)["status"] == "completed"
    [(_, msg)] = inbox.messages
    assert (
        msg["Subject"]
        == "Cancellation Scheduled: Your Pro subscription will be canceled on January 15, 2027"
    )
