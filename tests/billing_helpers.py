"""Helpers for the billing tests: a runtime wired to localstripe, a seeded customer, draining."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flowjobs.billing import setup
from flowjobs.billing.models import BillingRun
from flowjobs.core.worker import Worker

VISA = "4242424242424242"
DECLINING = "4000000000000341"  # attaches, then declines off-session charges


def stripe_sections(localstripe_url: str) -> dict:
    return {
        "stripe": {
            "test_api_key": "sk_test_flowjobs",
            "api_base": localstripe_url,
            "max_retries": 0,
        }
    }


@dataclass
class Seeded:
    org_id: str
    customer_id: str
    stripe_customer: str
    subscription_id: str
    period_id: str
    billing_run_id: str | None
    method_id: str | None


def seed(
    rt,
    *,
    card: str | None = VISA,
    unit_price: int = 2500,
    currency: str = "USD",
    start: datetime | None = None,
    trial_end: datetime | None = None,
    quantity: int = 1,
    discount: tuple[int, str] | None = None,
    org_fields: dict | None = None,
    arrears: bool = False,
) -> Seeded:
    """One organisation, customer (with a Stripe customer), card, monthly plan and subscription
    (billed at each period's start, or at its end with `arrears`)."""
    b = rt.billing
    gateway = b.gateway
    stripe_customer = gateway.create_customer(False, email="ada@example.com", name="Ada Lovelace")
    pm = gateway.attach_card(False, customer=stripe_customer, number=card) if card else None
    with b.unit() as s:
        org = setup.organization(s, "Acme Analytics", currency=currency, **(org_fields or {}))
        cust = setup.customer(
            s, org, email="ada@example.com", name="Ada Lovelace", stripe_customer_id=stripe_customer
        )
        method = setup.card(s, cust, stripe_payment_method_id=pm[0], last4=pm[1]) if pm else None
        price = setup.plan(s, org, "Pro", unit_price)
        sub, period, run = setup.subscription(
            s,
            cust,
            price,
            method,
            start=start or b.now(),
            quantity=quantity,
            trial_end=trial_end,
            run_billing_at_period_start=not arrears,
        )
        if discount:
            setup.discount(s, sub, amount=discount[0], amount_type=discount[1])
        return Seeded(
            org.id,
            cust.id,
            stripe_customer,
            sub.id,
            period.id,
            run.id if run else None,
            method.id if method else None,
        )


def drain(rt, **options) -> Worker:
    """Run every due run (and the runs they trigger) to the end, in this process."""
    worker = rt.make_worker(
        rt.worker_options(**{"concurrency": 4, "burst": True, "poll_interval": 0.01, **options})
    )
    worker.run()
    return worker


def standalone_payment(
    rt,
    *,
    customer_id: str,
    organization_id: str,
    number: str,
    amount: int,
    status: str,
    **payment_fields,
):
    """A standalone USD invoice with one card payment on it, made now (the runtime's clock), as
    an earlier charge or one taken outside a billing run; returns the Payment."""
    from flowjobs import ids
    from flowjobs.billing.models import Invoice, Payment
    from flowjobs.billing.types import utc_from_ms

    now = utc_from_ms(rt.clock.now_ms())
    with rt.billing.unit() as s:
        invoice = Invoice(
            id=ids.new_id("inv"),
            invoice_number=number,
            invoice_date=now,
            customer_id=customer_id,
            organization_id=organization_id,
            currency="USD",
            type="standalone",
        )
        s.add(invoice)
        payment = Payment(
            id=ids.new_id("pym"),
            invoice_id=invoice.id,
            amount=amount,
            payment_method="card",
            currency="USD",
            status=status,
            charge_date=now,
            organization_id=organization_id,
            customer_id=customer_id,
            **payment_fields,
        )
        s.add(payment)
    return payment


def invoice_for_a_new_customer(
    s, invoice_id: str, number: str, *, org: str = "Acme", currency: str = "USD", **fields
):
    """In unit of work `s`: an organisation, a customer of it (Ada) and a standalone invoice of
    hers (more Invoice columns in `fields`), dated the unit's `now` unless `invoice_date` says;
    returns the Invoice."""
    from flowjobs.billing.models import Invoice

    organization = setup.organization(s, org)
    customer = setup.customer(s, organization, email="ada@example.com", name="Ada Lovelace")
    invoice = Invoice(
        id=invoice_id,
        invoice_number=number,
        invoice_date=fields.pop("invoice_date", s.info["now"]),
        customer_id=customer.id,
        organization_id=organization.id,
        currency=currency,
        type="standalone",
        **fields,
    )
    s.add(invoice)
    return invoice


def get(rt, model, row_id: str):
    with rt.billing.unit() as s:
        return s.get(model, row_id)


def runs_of(rt, subscription_id: str) -> list[BillingRun]:
    from sqlmodel import select

    with rt.billing.unit() as s:
        return list(
            s.exec(
                select(BillingRun)
                .where(BillingRun.subscription_id == subscription_id)
                .order_by(BillingRun.attempt_number)
            )
        )


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def days(n: float) -> timedelta:
    return timedelta(days=n)
