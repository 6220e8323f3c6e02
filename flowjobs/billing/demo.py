"""`flowjobs demo seed`: a demo organisation with customers whose first billing runs are due.

Customers get real Stripe customers and card PaymentMethods through the gateway (in the demo,
against localstripe). Most start today, so their first billing run is due now. The `declining`
ones get card 4000000000000341 (it attaches, then declines off-session charges) and a month
of paid history whose period ended moments ago, within the current hour: the next hourly cron
(or `schedules trigger hourly-cron`) rolls them over, their renewal is declined, and the dunning
ladder schedules a retry in 3 days.

One-time purchases (`--purchases`, issue 16 §2): the first customers also open a checkout
session for a one-time price (one with a 10 % `once` discount) and pay it at Stripe, as the
checkout page would — a PaymentIntent with the checkout metadata, confirmed. flowjobs learns of
it from the `payment_intent.succeeded` event (scripts/demo.sh fetches them with
`flowjobs events fetch`); each session's PaymentIntent id is kept in
`checkout_sessions.stripe_payment_intent_id`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import select

from flowjobs import ids
from flowjobs.billing import enums as E
from flowjobs.billing import setup
from flowjobs.billing.models import Invoice, Payment
from flowjobs.billing.periods import add_months

VISA = "4242424242424242"
DECLINING = "4000000000000341"
NAMES = [
    "Ada Lovelace",
    "Grace Hopper",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Frances Allen",
    "Ken Thompson",
    "Margaret Hamilton",
    "John Backus",
    "Radia Perlman",
]
PLANS = [("Starter", 1200), ("Pro", 4900), ("Team", 19900)]
ONE_TIME = [("Onboarding Workshop", 29900), ("Field Guide", 4900)]


@dataclass
class Seeded:
    organization_id: str
    customers: int = 0
    declining: int = 0
    subscriptions: list[str] = field(default_factory=list)
    billing_runs: list[str] = field(default_factory=list)
    checkout_sessions: list[str] = field(default_factory=list)
    payment_intents: list[str] = field(default_factory=list)


def seed(b, customers: int = 10, declining: int = 2, progress=None, purchases: int = 0) -> Seeded:
    if customers < 1 or not 0 <= declining <= customers:
        from flowjobs.errors import BadInput

        raise BadInput("need --customers >= 1 and 0 <= --declining <= --customers")
    if not 0 <= purchases <= customers - declining:
        from flowjobs.errors import BadInput

        raise BadInput("need 0 <= --purchases <= customers with a working card")
    cards = []  # Stripe first: if it is unreachable, nothing is written to the database
    for i in range(customers):
        name = NAMES[i % len(NAMES)] + (f" {i // len(NAMES) + 1}" if i >= len(NAMES) else "")
        email = name.lower().replace(" ", ".") + "@demo.example"
        number = DECLINING if i >= customers - declining else VISA
        stripe_customer = b.gateway.create_customer(False, email=email, name=name)
        cards.append(
            (
                name,
                email,
                number,
                stripe_customer,
                *b.gateway.attach_card(False, customer=stripe_customer, number=number),
            )
        )
        if progress:
            progress()
    with b.unit() as s:
        org = setup.organization(
            s,
            "Flowglad Demo Co",
            currency="USD",
            country_code="US",
            contact_email="billing@demo.example",
        )
        setup.member(s, org, "owner@demo.example")
        prices = [setup.plan(s, org, plan_name, amount) for plan_name, amount in PLANS]
        result = Seeded(org.id)
        for i, (name, email, number, stripe_customer, pm_id, last4, country) in enumerate(cards):
            cust = setup.customer(
                s, org, email=email, name=name, stripe_customer_id=stripe_customer
            )
            method = setup.card(
                s, cust, stripe_payment_method_id=pm_id, last4=last4, country_code=country
            )
            renewing = number == DECLINING
            start = add_months(b.now(), -1) if renewing else b.now()
            sub, period, run = setup.subscription(
                s, cust, prices[i % len(prices)], method, start=start
            )
            assert run is not None  # the customer has a card: its subscription has a run
            if renewing:
                period.end_date = sub.current_billing_period_end = just_ended(b.now())
                _paid(s, sub, period, run, cust)
            result.subscriptions.append(sub.id)
            result.billing_runs.append(run.id)
            result.customers += 1
            result.declining += renewing
            if i < purchases:
                checkout = _checkout(s, org, cust, i)
                result.checkout_sessions.append(checkout.id)
    for session_id in result.checkout_sessions:  # the customers pay at checkout
        result.payment_intents.append(_pay_checkout(b, session_id))
    return result


def just_ended(now: datetime) -> datetime:
    """When a renewing demo period ends: moments ago, and within the current hour, so that the
    next `schedules trigger hourly-cron` (whose window starts at the hour) rolls it over. A
    month back and a calendar month on ended a day early after a 30-day month, and seeding in
    an hour's first minutes put the end before the hour: the README's next step found nothing
    to bill."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    return now - min(timedelta(seconds=30), (now - hour) / 2)


def _checkout(s, org, cust, i: int):
    """A checkout session for a one-time price (the first one with a 10 % `once` discount)."""
    from flowjobs.billing import purchases

    name, amount = ONE_TIME[i % len(ONE_TIME)]
    price = purchases.one_time_price(s, org, name, amount)
    discount = (10, E.DiscountAmountType.PERCENT, E.DiscountDuration.ONCE) if i == 0 else None
    return purchases.checkout_session(s, cust, price, discount=discount)


def _pay_checkout(b, session_id: str) -> str:
    """Pay the session at Stripe as the checkout page would; record the PaymentIntent's id."""
    from flowjobs.billing import purchases
    from flowjobs.billing.models import CheckoutSession, Customer, PaymentMethod

    with b.unit() as s:
        session = s.get(CheckoutSession, session_id)
        customer = s.get(Customer, session.customer_id)
        card = s.exec(select(PaymentMethod).where(PaymentMethod.customer_id == customer.id)).first()
        amount = purchases.amount_due(s, session)
        currency = purchases.checkout_totals(s, session).currency
    result = b.gateway.charge_off_session(
        livemode=False,
        amount=amount,
        currency=currency,
        customer=customer.stripe_customer_id,
        payment_method=card.stripe_payment_method_id,
        metadata=purchases.intent_metadata(session_id),
        idempotency_key=f"demo-checkout:{session_id}",
    )
    with b.unit() as s:
        s.get(CheckoutSession, session_id).stripe_payment_intent_id = result.payment_intent_id
    return result.payment_intent_id


def _paid(s, sub, period, run, cust) -> None:
    """Record the first period as billed and paid (history for a renewal)."""
    from flowjobs.billing.repo import allocate_invoice_number, period_items

    amount = sum(i.unit_price * i.quantity for i in period_items(s, period.id))
    invoice = Invoice(
        id=ids.new_id("inv"),
        livemode=sub.livemode,
        invoice_number=allocate_invoice_number(s, cust),
        invoice_date=period.start_date,
        due_date=period.start_date,
        billing_period_id=period.id,
        customer_id=cust.id,
        organization_id=sub.organization_id,
        status=E.InvoiceStatus.PAID,
        subscription_id=sub.id,
        billing_run_id=run.id,
        currency=cust_currency(s, sub),
        subtotal=amount,
        tax_amount=0,
        type=E.InvoiceType.SUBSCRIPTION,
        billing_period_start_date=period.start_date,
        billing_period_end_date=period.end_date,
    )
    s.add(invoice)
    setup.invoice_lines(
        s, invoice, period_items(s, period.id), billing_run_id=run.id
    )  # what was paid for
    s.add(
        Payment(
            id=ids.new_id("pym"),
            livemode=sub.livemode,
            invoice_id=invoice.id,
            amount=amount,
            payment_method=E.PaymentMethodType.CARD,
            currency=invoice.currency,
            status=E.PaymentStatus.SUCCEEDED,
            charge_date=period.start_date,
            organization_id=sub.organization_id,
            customer_id=cust.id,
            subscription_id=sub.id,
            payment_method_id=run.payment_method_id,
            billing_period_id=period.id,
            billing_run_id=run.id,
            stripe_charge_id=f"ch_demo_{run.id}",
        )
    )
    run.status = E.BillingRunStatus.SUCCEEDED
    run.completed_at = period.start_date


def cust_currency(s, sub) -> str:
    from flowjobs.billing.models import Organization

    return s.get(Organization, sub.organization_id).default_currency
