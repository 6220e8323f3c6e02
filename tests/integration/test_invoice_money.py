"""One source of truth for an invoice's money (flowjobs.billing.totals): the billing run charges
what the invoice PDF, the receipt, the emails and `billing show --json` say — checked on real
runs against localstripe, PDFs read back with pypdf, emails through a real SMTP server
(aiosmtpd), on SQLite and PostgreSQL. Also the fee rules that feed a billing run: the
international-fee country, an unknown country, the effective fee percentage, and payment
methods recorded from a SetupIntent as Stripe reports them."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from flowjobs import ids
from flowjobs.billing import setup
from flowjobs.billing.models import (
    BillingRun,
    CheckoutSession,
    DiscountRedemption,
    FeeCalculation,
    Invoice,
    Payment,
    PaymentMethod,
    Subscription,
)
from flowjobs.billing.totals import invoice_totals
from flowjobs.documents.service import invoice_pdf, receipt_pdf
from tests.billing_helpers import DECLINING, drain, get, seed, stripe_sections
from tests.integration.test_documents import after, lines_of

PAY = "https://pay.example/invoices/{invoice_id}"


@pytest.fixture
def mrt(make_runtime, localstripe_url, tmp_path):
    return make_runtime(
        documents={"dir": str(tmp_path / "docs"), "pay_url_template": PAY},
        **stripe_sections(localstripe_url),
    )


def run_billing(rt, billing_run_id: str) -> dict:
    run = rt.trigger(
        "attempt-billing-run",
        {"billingRunId": billing_run_id},
        idempotency_key=f"attempt-billing-run:{billing_run_id}",
    )
    drain(rt)
    return rt.store.get_run(run.id)


def run_payment(rt, billing_run_id: str) -> Payment | None:
    with rt.billing.unit() as s:
        return s.exec(select(Payment).where(Payment.billing_run_id == billing_run_id)).first()


def period_invoice(rt, period_id: str) -> Invoice:
    with rt.billing.unit() as s:
        return s.exec(select(Invoice).where(Invoice.billing_period_id == period_id)).one()


def due_words(lines: list[str]) -> list[str]:
    return [ln for ln in lines if "due" in ln.lower()]


def test_a_fully_redeemed_discount_is_neither_charged_nor_shown(mrt):
    """Upstream order: the first redemption that is not fully redeemed applies. Charged 25.00,
    and the PDF said 12.50 (it applied the used-up 50 % code)."""
    seeded = seed(mrt, unit_price=2500)
    with mrt.billing.unit() as s:
        used = setup.discount(
            s, s.get(Subscription, seeded.subscription_id), amount=50, code="HALFOFF"
        )
        used.fully_redeemed = True
    run_billing(mrt, seeded.billing_run_id)
    payment = run_payment(mrt, seeded.billing_run_id)
    assert (payment.amount, payment.status) == (2500, "succeeded")
    invoice = period_invoice(mrt, seeded.period_id)
    lines = lines_of(invoice_pdf(mrt.billing, invoice.id, PAY))
    assert not [ln for ln in lines if ln.startswith("Discount")] and "HALFOFF" not in " ".join(
        lines
    )
    assert after(lines, "Total") == "$25.00" and after(lines, "Amount paid") == "$25.00"
    # a paid invoice never says "due": "Paid <date>", "Date paid", and an amount due of 0.00
    assert "Paid January 15, 2027" in lines and after(lines, "Date paid") == "January 15, 2027"
    assert due_words(lines) == ["Amount due"] and after(lines, "Amount due") == "$0.00"
    assert not [ln for ln in lines if ln.startswith("Pay online")]  # nothing left to pay


def test_an_active_discount_is_charged_and_shown_alike_and_kept_after_it_is_used_up(mrt):
    seeded = seed(mrt, unit_price=2500)
    with mrt.billing.unit() as s:
        sub = s.get(Subscription, seeded.subscription_id)
        setup.discount(s, sub, amount=50, code="HALFOFF")
    run_billing(mrt, seeded.billing_run_id)
    assert run_payment(mrt, seeded.billing_run_id).amount == 1250
    invoice = period_invoice(mrt, seeded.period_id)
    with (
        mrt.billing.unit() as s
    ):  # the code is used up afterwards: the issued invoice keeps its discount
        for redemption in s.exec(select(DiscountRedemption)):
            redemption.fully_redeemed = True
    lines = lines_of(invoice_pdf(mrt.billing, invoice.id))
    assert after(lines, "Discount (HALFOFF)") == "-$12.50" and after(lines, "Total") == "$12.50"
    assert after(lines, "Amount due") == "$0.00"


def test_an_open_invoice_shows_its_amount_due_its_periods_its_customer_and_the_pay_link(mrt):
    seeded = seed(mrt, card=DECLINING, unit_price=4900)
    run_billing(mrt, seeded.billing_run_id)
    invoice = period_invoice(mrt, seeded.period_id)
    assert invoice.status == "open"
    lines = lines_of(invoice_pdf(mrt.billing, invoice.id, PAY))
    assert "$49.00 due January 15, 2027" in lines and after(lines, "Amount due") == "$49.00"
    assert after(lines, "Date due") == "January 15, 2027"
    assert f"Pay online: https://pay.example/invoices/{invoice.id}" in lines
    # each line with its billing period
    assert lines[lines.index("Pro") : lines.index("Pro") + 2] == [
        "Pro",
        "January 15, 2027 – February 15, 2027",
    ]
    # no billing address: "Bill to" is the customer's name and email
    bill = lines.index("Bill to")
    assert lines[bill + 1 : bill + 3] == ["Ada Lovelace", "ada@example.com"]
    # without a template there is no link
    assert not [
        ln for ln in lines_of(invoice_pdf(mrt.billing, invoice.id)) if ln.startswith("Pay online")
    ]


def test_the_pay_link_comes_from_the_configured_template(make_runtime, localstripe_url, tmp_path):
    from flowjobs.config import Settings
    from flowjobs.errors import ConfigError  # noqa: F401

    with pytest.raises(Exception, match="pay_url_template"):
        Settings.model_validate({"documents": {"pay_url_template": "https://pay.example/{nope}"}})
    with pytest.raises(Exception, match="pay_url_template"):
        Settings.model_validate({"documents": {"pay_url_template": "pay.example/{invoice_id}"}})
    rt = make_runtime(
        documents={
            "dir": str(tmp_path / "docs"),
            "pay_url_template": "https://pay.example/{organization_id}/{invoice_number}",
        },
        **stripe_sections(localstripe_url),
    )
    seeded = seed(rt, card=DECLINING)
    run_billing(rt, seeded.billing_run_id)
    invoice = period_invoice(rt, seeded.period_id)
    pdf = rt.trigger(
        "generate-invoice-pdf", {"invoiceId": invoice.id}
    )  # the task reads the setting
    drain(rt)
    assert rt.store.get_run(pdf.id)["status"] == "completed"
    lines = lines_of(rt.documents.read(get(rt, Invoice, invoice.id).pdf_url))
    assert (
        f"Pay online: https://pay.example/{invoice.organization_id}/{invoice.invoice_number}"
        in lines
    )


def test_a_demo_seeded_payment_has_a_receipt_whose_totals_are_what_was_paid(mrt):
    from flowjobs.billing.demo import seed as demo_seed

    seeded = demo_seed(mrt.billing, customers=1, declining=1)
    with mrt.billing.unit() as s:
        payment = s.exec(
            select(Payment).where(Payment.organization_id == seeded.organization_id)
        ).one()
    lines = lines_of(receipt_pdf(mrt.billing, payment.id))
    assert payment.amount == 1200
    assert (
        after(lines, "Total") == "$12.00" and after(lines, "Amount paid") == "$12.00"
    )  # was "Total $0.00"
    assert "$12.00 paid on" in " ".join(lines) and "Starter" in lines
    assert lines_of(invoice_pdf(mrt.billing, payment.invoice_id)).count("Amount due") == 1


def test_a_receipt_of_a_partial_payment_says_what_is_still_due(mrt):
    seeded = seed(mrt, unit_price=4900)
    with mrt.billing.unit() as s:
        s.add(_invoice_for(s, seeded, "P-00001"))
    with mrt.billing.unit() as s:
        invoice = s.exec(select(Invoice).where(Invoice.invoice_number == "P-00001")).one()
        earlier = _payment(s, seeded, invoice, 1900, "succeeded")
    run_billing(mrt, seeded.billing_run_id)
    assert run_payment(mrt, seeded.billing_run_id).amount == 3000  # 49.00 − 19.00 paid before
    lines = lines_of(receipt_pdf(mrt.billing, earlier.id))
    assert after(lines, "Total") == "$49.00" and after(lines, "Amount paid") == "$19.00"
    assert "Amount due" not in lines  # the invoice has since been paid in full
    invoice_lines = lines_of(invoice_pdf(mrt.billing, invoice.id))
    assert (
        after(invoice_lines, "Amount paid") == "$49.00"
        and after(invoice_lines, "Amount due") == "$0.00"
    )


def _invoice_for(s, seeded, number: str) -> Invoice:
    sub = s.get(Subscription, seeded.subscription_id)
    return Invoice(
        id=ids.new_id("inv"),
        livemode=False,
        invoice_number=number,
        invoice_date=s.info["now"],
        due_date=s.info["now"],
        billing_period_id=seeded.period_id,
        customer_id=seeded.customer_id,
        organization_id=seeded.org_id,
        status="open",
        subscription_id=sub.id,
        currency="USD",
        type="subscription",
    )


def _payment(s, seeded, invoice: Invoice, amount: int, status: str, **fields) -> Payment:
    payment = Payment(
        id=ids.new_id("pym"),
        livemode=False,
        invoice_id=invoice.id,
        amount=amount,
        payment_method="card",
        currency=invoice.currency,
        status=status,
        charge_date=s.info["now"] - timedelta(days=1),
        organization_id=seeded.org_id,
        customer_id=seeded.customer_id,
        subscription_id=seeded.subscription_id,
        payment_method_id=seeded.method_id,
        billing_period_id=seeded.period_id,
        stripe_payment_intent_id=f"pi_{ids.new_id('x')[2:]}",
        **fields,
    )
    s.add(payment)
    return payment


# -- fees ---------------------------------------------------------------------------------------
def test_international_fee_country_is_the_billing_address_first_and_the_fee_percentage_is_effective(
    mrt,
):
    """A US organisation; the card was issued in the US but the customer's billing address is in
    Germany: the international fee applies (upstream and spec order). 10.00 of upfront processing
    credits on a 25.00 charge: 0.65 % on 15.00, stored as 0.39 %."""
    seeded = seed(mrt, unit_price=2500, org_fields={"upfront_processing_credits": 1000})
    with mrt.billing.unit() as s:
        method = s.get(PaymentMethod, seeded.method_id)
        method.billing_details = {"name": "Ada Lovelace", "address": {"country": "DE"}}
        method.payment_method_data = {"last4": "4242", "country": "US"}
    run_billing(mrt, seeded.billing_run_id)
    with mrt.billing.unit() as s:
        fee = s.exec(
            select(FeeCalculation).where(FeeCalculation.billing_run_id == seeded.billing_run_id)
        ).one()
    assert fee.international_fee_percentage == "1.5"
    assert fee.flowglad_fee_percentage == "0.39"
    assert get(mrt, BillingRun, seeded.billing_run_id).status == "succeeded"


def test_an_unknown_country_fails_the_billing_run_with_its_reason_and_charges_nothing(mrt):
    seeded = seed(mrt, unit_price=2500)
    with mrt.billing.unit() as s:
        method = s.get(PaymentMethod, seeded.method_id)
        method.billing_details = {"name": "Ada Lovelace"}
        method.payment_method_data = {"last4": "4242"}
    result = run_billing(mrt, seeded.billing_run_id)
    run = get(mrt, BillingRun, seeded.billing_run_id)
    assert run.status == "failed"
    assert "no known country" in run.error_details["message"]
    assert "no known country" in (result["result"] or "") + (result["error"] or "")
    assert run_payment(mrt, seeded.billing_run_id) is None
    assert mrt.billing.gateway.count_charges(False, seeded.stripe_customer) == {}


def test_a_setup_intent_records_the_card_stripe_reports(mrt, localstripe_url):
    """`setup_intent.succeeded` for an add-payment-method checkout: the new default card is the
    one Stripe holds (localstripe reports Visa, FR, 12/2035) — not a US card ending 4242."""
    from flowjobs.webhooks.replay import read_incoming, replay
    from tests.webhook_helpers import stripe_client

    seeded = seed(mrt)
    client = stripe_client(localstripe_url)
    intent = client.v1.setup_intents.create(params={"customer": seeded.stripe_customer})
    card = {"number": "4000056655665556", "exp_month": 7, "exp_year": 2031, "cvc": "123"}
    intent = client.v1.setup_intents.confirm(
        intent.id, params={"payment_method_data": {"type": "card", "card": card}}
    )
    assert intent.status == "succeeded"
    with mrt.billing.unit() as s:
        s.add(
            CheckoutSession(
                id=ids.new_id("chckt_session"),
                type="add_payment_method",
                organization_id=seeded.org_id,
                customer_id=seeded.customer_id,
                target_subscription_id=seeded.subscription_id,
                stripe_setup_intent_id=intent.id,
            )
        )
    event = {
        "id": f"evt_{ids.new_id('x')[2:]}",
        "object": "event",
        "type": "setup_intent.succeeded",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": intent.to_dict()},
    }
    replay(mrt.billing, mrt.settings, read_incoming(mrt.settings, json.dumps(event).encode()))
    drain(mrt)
    sub = get(mrt, Subscription, seeded.subscription_id)
    method = get(mrt, PaymentMethod, sub.default_payment_method_id)
    assert (
        method.id != seeded.method_id and method.stripe_payment_method_id == intent.payment_method
    )
    assert method.type == "card"
    assert method.payment_method_data == {
        "brand": "visa",
        "last4": "5556",
        "exp_month": 7,
        "exp_year": 2031,
        "country": "FR",
        "funding": "credit",
    }
    # it feeds the fee rule (FR card, US organisation: international) and the receipt of a run
    # charging it (the next period's run takes the subscription's default method)
    with mrt.billing.unit() as s:
        s.get(BillingRun, seeded.billing_run_id).payment_method_id = method.id
    run_billing(mrt, seeded.billing_run_id)
    with mrt.billing.unit() as s:
        fee = s.exec(
            select(FeeCalculation).where(FeeCalculation.billing_run_id == seeded.billing_run_id)
        ).one()
    assert fee.international_fee_percentage == "1.5"
    payment = run_payment(mrt, seeded.billing_run_id)
    assert payment.payment_method_id == method.id
    assert (
        after(lines_of(receipt_pdf(mrt.billing, payment.id)), "Payment method") == "Visa •••• 5556"
    )


def test_billing_show_prints_the_invoice_money(mrt, tmp_path):
    from tests.cli_helpers import as_json, cli_env, flowjobs

    seeded = seed(mrt, unit_price=4900, discount=(10, "percent"))
    run_billing(mrt, seeded.billing_run_id)
    invoice = period_invoice(mrt, seeded.period_id)
    env = cli_env(mrt.db.url)
    shown = as_json(flowjobs("billing", "show", "invoice", invoice.id, "--json", env=env))
    money = shown["money"]
    assert (
        money["base"],
        money["discount"],
        money["subtotal"],
        money["tax"],
        money["total"],
        money["paid"],
        money["due"],
    ) == (4900, 490, 4410, 0, 4410, 4410, 0)
    assert money["discountCode"] == "WELCOME" and money["formatted"]["total"] == "$44.10"
    assert money["lines"][0]["periodStart"].startswith("2027-01-15")
    run = as_json(
        flowjobs("billing", "show", "billing-run", seeded.billing_run_id, "--json", env=env)
    )
    assert run["money"] == money
    text = flowjobs("billing", "show", "invoice", invoice.id, env=env).stdout
    assert "Pro  1 x $49.00 = $49.00  2027-01-15 – 2027-02-15" in text
    assert (
        "amount=$49.00  discount (WELCOME)=-$4.90  subtotal=$44.10  total=$44.10  paid=$44.10  due=$0.00"
        in text
    )
    with mrt.billing.unit() as s:
        assert invoice_totals(s, invoice.id).as_dict() == money


# -- the property: charge, PDF, email and `billing show --json` agree to the minor unit ---------
def parse_money(text: str, currency: str) -> int:
    """`$1,234.56` / `-€5.00` / `¥12,000` / `1.500 KWD` → minor units (the examples' own
    currencies' exponents, not the product's table)."""
    from decimal import Decimal

    digits = "".join(ch for ch in text if ch.isdigit() or ch == ".")
    value = Decimal(digits).scaleb({"JPY": 0, "KWD": 3}.get(currency, 2))
    return int(value) * (-1 if text.strip().startswith("-") else 1)


def fact(text: str, label: str) -> str:
    """The value of the last `label: value` line of a plain-text email."""
    found = [ln.split(": ", 1)[1] for ln in text.splitlines() if ln.startswith(label + ": ")]
    assert found, (label, text)
    return found[-1]


def half_up_percent(amount: int, percent: int) -> int:
    return (amount * percent * 2 + 100) // 200  # half-up for non-negative integers


redemptions = st.lists(
    st.tuples(
        st.sampled_from(["percent", "fixed"]),
        st.integers(0, 120),
        st.integers(0, 6000),
        st.booleans(),
    ),
    max_size=2,
)
examples = st.fixed_dictionaries(
    {
        "items": st.lists(
            st.tuples(st.integers(0, 20000), st.integers(1, 3)), min_size=1, max_size=3
        ),
        "redemptions": redemptions,
        "mor": st.booleans(),
        "currency": st.sampled_from(["USD", "EUR", "JPY", "KWD"]),
        "prior": st.lists(
            st.tuples(st.integers(1, 15000), st.integers(0, 100)), max_size=2
        ),  # (amount, % refunded)
        "credits": st.integers(0, 5000),
        "declines": st.booleans(),
    }
)


@pytest.fixture
def prt(make_runtime, localstripe_url, tmp_path, smtp_inbox):
    port, _ = smtp_inbox
    return make_runtime(
        documents={"dir": str(tmp_path / "docs"), "pay_url_template": PAY},
        billing={"tax_calculator": "flat:20"},
        mail={
            "transport": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "retries": 1,
            "timeout": "5s",
            "app_url": "https://app.example",
        },
        **stripe_sections(localstripe_url),
    )


@pytest.fixture
def smtp_inbox():
    from aiosmtpd.controller import Controller

    from tests.integration.test_notifications import Collect, free_port

    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, handler
    controller.stop()


def show_invoice_json(invoice_id: str, db_url: str, tmp_path_factory) -> dict:
    """`flowjobs billing show invoice ID --json`, run in this process (the typer app itself;
    a subprocess per example would be seconds each), with the process's logging put back."""
    import logging

    from typer.testing import CliRunner

    from flowjobs.cli.app import app

    config = tmp_path_factory.getbasetemp() / "empty-flowjobs.toml"
    config.touch()
    handlers, level = list(logging.root.handlers), logging.root.level
    try:
        result = CliRunner().invoke(
            app,
            ["--log-level", "warning", "billing", "show", "invoice", invoice_id, "--json"],
            env={"FLOWJOBS_DATABASE_URL": db_url, "FLOWJOBS_CONFIG": str(config)},
        )
    finally:
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@given(example=examples)
@settings(
    max_examples=int(os.environ.get("FLOWJOBS_PROPERTY_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # each example is a real billing run
def test_charge_pdf_email_and_billing_show_agree_to_the_minor_unit(
    prt, smtp_inbox, tmp_path_factory, example
):
    from flowjobs.billing import repo
    from flowjobs.billing.models import BillingPeriodItem
    from flowjobs.billing.money import format_money

    rt, (_, inbox), currency = prt, smtp_inbox, example["currency"]
    gateway = rt.billing.gateway
    stripe_customer = gateway.create_customer(False, email="ada@example.com", name="Ada Lovelace")
    pm_id, last4, _ = gateway.attach_card(
        False,
        customer=stripe_customer,
        number="4000000000000341" if example["declines"] else "4242424242424242",
    )
    (first_price, first_qty), *more = example["items"]
    with rt.billing.unit() as s:
        org = setup.organization(
            s,
            "Acme Analytics",
            currency=currency,
            upfront_processing_credits=example["credits"],
            stripe_connect_contract_type="merchant_of_record" if example["mor"] else "platform",
        )
        cust = setup.customer(
            s, org, email="ada@example.com", name="Ada Lovelace", stripe_customer_id=stripe_customer
        )
        method = setup.card(s, cust, stripe_payment_method_id=pm_id, last4=last4)
        sub, period, run = setup.subscription(
            s,
            cust,
            setup.plan(s, org, "Pro", first_price),
            method,
            start=rt.billing.now(),
            quantity=first_qty,
        )
        for n, (price, qty) in enumerate(more):
            s.add(
                BillingPeriodItem(
                    id=ids.new_id("billing_period_item"),
                    billing_period_id=period.id,
                    quantity=qty,
                    unit_price=price,
                    name=f"Extra {n}",
                )
            )
        for n, (kind, percent, fixed, used) in enumerate(example["redemptions"]):
            row = setup.discount(
                s,
                sub,
                amount=percent if kind == "percent" else fixed,
                amount_type=kind,
                code=f"{kind.upper()}{percent if kind == 'percent' else fixed}",
            )
            row.fully_redeemed = used
            row.created_at = s.info["now"] - timedelta(
                minutes=10 - n
            )  # redeemed one after the other
        invoice = Invoice(
            id=ids.new_id("inv"),
            invoice_number=repo.allocate_invoice_number(s, cust),
            invoice_date=s.info["now"],
            due_date=s.info["now"],
            billing_period_id=period.id,
            customer_id=cust.id,
            organization_id=org.id,
            status="open",
            subscription_id=sub.id,
            currency=currency,
            type="subscription",
            billing_period_start_date=period.start_date,
            billing_period_end_date=period.end_date,
        )
        s.add(invoice)
        seeded = type(
            "Seeded",
            (),
            {
                "org_id": org.id,
                "customer_id": cust.id,
                "subscription_id": sub.id,
                "method_id": method.id,
                "period_id": period.id,
            },
        )
        prior_net = 0
        for amount, refunded_percent in example["prior"]:
            refund = amount * refunded_percent // 100
            _payment(
                s,
                seeded,
                invoice,
                amount,
                "succeeded",
                refunded=bool(refund),
                refunded_amount=refund or None,
            )
            prior_net += amount - refund
        failed = _payment(
            s, seeded, invoice, 999, "failed", failure_message="Your card was declined."
        )
        run_id, invoice_id, failed_id = run.id, invoice.id, failed.id

    # an independent oracle of spec §7.5 for what the run must charge
    base = sum(p * q for p, q in example["items"])
    active = next((r for r in example["redemptions"] if not r[3]), None)
    discount = 0
    if active and base > 0:
        discount = (
            min(half_up_percent(base, min(active[1], 100)), base)
            if active[0] == "percent"
            else min(active[2], base)
        )
    pretax = base - discount
    tax = half_up_percent(pretax, 20) if example["mor"] and pretax > 0 else 0
    total = pretax + tax
    expected_charge = max(total - prior_net, 0) if total > 0 else 0

    run_billing(rt, run_id)
    charged = run_payment(rt, run_id)
    assert (charged.amount if charged else 0) == expected_charge
    with rt.billing.unit() as s:
        money = invoice_totals(s, invoice_id)
        status = s.get(Invoice, invoice_id).status
    assert (money.base, money.discount, money.subtotal, money.tax, money.total) == (
        base,
        discount,
        pretax,
        tax,
        total,
    )
    succeeded = charged is None or charged.status == "succeeded"
    assert money.due == (0 if succeeded else expected_charge)
    assert (status == "paid") == succeeded

    # the invoice PDF
    fmt = lambda v: format_money(v, currency)  # noqa: E731
    lines = lines_of(invoice_pdf(rt.billing, invoice_id, PAY))
    assert parse_money(after(lines, "Total"), currency) == total
    assert parse_money(after(lines, "Subtotal"), currency) == pretax
    assert parse_money(after(lines, "Amount due"), currency) == money.due
    assert bool([ln for ln in lines if ln.startswith("Discount")]) == bool(discount)
    if discount:
        assert parse_money(after(lines, "Amount"), currency) == base
        assert (
            -parse_money(
                after(lines, [ln for ln in lines if ln.startswith("Discount")][0]), currency
            )
            == discount
        )
    assert ("Tax" in lines) == bool(tax) and (
        not tax or parse_money(after(lines, "Tax"), currency) == tax
    )
    if succeeded:  # paid on the day of the last settled payment
        assert [ln for ln in lines if ln.startswith("Paid ")] and due_words(lines) == ["Amount due"]
    else:
        assert f"{fmt(money.due)} due January 15, 2027" in lines
        assert f"Pay online: https://pay.example/invoices/{invoice_id}" in lines

    # the customer's email about the invoice, through the SMTP server
    inbox.messages.clear()
    rt.trigger(
        "send-customer-payment-failed-notification", {"paymentId": failed_id, "retryDate": None}
    )
    drain(rt)
    ((_, message),) = [
        m
        for m in inbox.messages
        if invoice.invoice_number in m[1].get_body(("plain",)).get_content()
    ]
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert parse_money(fact(text, "Total"), currency) == total
    assert parse_money(fact(text, "Subtotal"), currency) == pretax
    assert parse_money(fact(text, "Amount due"), currency) == money.due
    assert (not tax and "Tax: " not in text) or parse_money(fact(text, "Tax"), currency) == tax

    # `flowjobs billing show invoice ID --json`
    shown = show_invoice_json(invoice_id, rt.settings.database.url, tmp_path_factory)
    data = shown["money"]
    assert (
        data["base"],
        data["discount"],
        data["subtotal"],
        data["tax"],
        data["total"],
        data["due"],
    ) == (base, discount, pretax, tax, total, money.due)
    assert data["paid"] - data["refunded"] == prior_net + (
        charged.amount if charged and succeeded else 0
    )
