"""`setup-intent-succeeded` (spec §8.2): finish the checkout session the SetupIntent belongs to.

Idempotent: a session already `succeeded` (or otherwise finished) is left alone, and a
subscription is created at most once per SetupIntent (`subscriptions.stripe_setup_intent_id`
is unique). Types: `add_payment_method` (the new card becomes the target subscription's
default), `activate_subscription` (same, and an `incomplete` subscription becomes `active`),
`product` (a new subscription on the session's price, billed from now; a paid one replaces the
customer's free subscription, `upgraded_to_paid`; the customer's subscription-created — or
upgraded — and the organisation's subscription-created emails are sent for a paid plan).

One-time payments — `purchase` sessions and `product` sessions of a `single_payment` price —
are paid by a PaymentIntent and recorded from its events (flowjobs.billing.purchases); a
SetupIntent of such a session creates nothing and is reported as ignored.
"""

from __future__ import annotations

from sqlmodel import select

from flowjobs.billing import enums as E
from flowjobs.billing import repo, setup
from flowjobs.billing.models import CheckoutSession, Customer, PaymentMethod, Price, Subscription
from flowjobs.billing.repo import BillingError
from flowjobs.webhooks.shapes import SetupIntent

FINISHED = {
    E.CheckoutSessionStatus.SUCCEEDED,
    E.CheckoutSessionStatus.FAILED,
    E.CheckoutSessionStatus.EXPIRED,
}


def setup_intent_succeeded(b, intent: SetupIntent) -> dict:
    card = setup.stripe_payment_method(b, intent)  # read from Stripe before any transaction opens
    with b.unit() as s:
        session = s.exec(
            select(CheckoutSession).where(CheckoutSession.stripe_setup_intent_id == intent.id)
        ).first()
        if session is None:
            return {"result": "ignored", "detail": f"no checkout session for {intent.id}"}
        if session.status in FINISHED:
            return {
                "result": "already finished",
                "checkoutSessionId": session.id,
                "status": session.status,
            }
        if _paid_by_payment_intent(s, session):
            return {
                "result": "ignored",
                "detail": f"checkout session {session.id} is a one-time payment: it is recorded "
                "from its PaymentIntent (payment_intent.succeeded), not a SetupIntent",
                "checkoutSessionId": session.id,
            }
        customer = s.get(Customer, session.customer_id) if session.customer_id else None
        if customer is None:
            raise BillingError(f"checkout session {session.id} has no customer")
        method = _method(s, customer, intent, card)
        outcome = _apply(b, s, session, customer, method, intent)
        session.status = E.CheckoutSessionStatus.SUCCEEDED
        return {"result": outcome, "checkoutSessionId": session.id, "paymentMethodId": method.id}


def _paid_by_payment_intent(s, session: CheckoutSession) -> bool:
    if session.type == E.CheckoutSessionType.PURCHASE:
        return True
    if session.type != E.CheckoutSessionType.PRODUCT:
        return False
    price = s.get(Price, session.price_id or "")
    return price is not None and price.type == E.PriceType.SINGLE_PAYMENT


def _method(s, customer: Customer, intent: SetupIntent, card: dict | None) -> PaymentMethod:
    stripe_pm = intent.payment_method
    stripe_pm = stripe_pm if stripe_pm is None or isinstance(stripe_pm, str) else stripe_pm.id
    if not stripe_pm:
        raise BillingError(f"SetupIntent {intent.id} carries no payment method")
    found = s.exec(
        select(PaymentMethod).where(PaymentMethod.stripe_payment_method_id == stripe_pm)
    ).first()
    return found or setup.payment_method_from_stripe(s, customer, card)  # the card Stripe reports


def _apply(b, s, session, customer, method, intent) -> str:
    if session.type in (
        E.CheckoutSessionType.ADD_PAYMENT_METHOD,
        E.CheckoutSessionType.ACTIVATE_SUBSCRIPTION,
    ):
        sub = s.get(Subscription, session.target_subscription_id or "")
        if sub is None:
            raise BillingError(
                f"checkout session {session.id} names no existing target subscription"
            )
        sub.default_payment_method_id = method.id
        if (
            session.type == E.CheckoutSessionType.ACTIVATE_SUBSCRIPTION
            and sub.status == E.SubscriptionStatus.INCOMPLETE
        ):
            repo.set_subscription_status(sub, E.SubscriptionStatus.ACTIVE)
        return (
            "payment method set"
            if session.type == E.CheckoutSessionType.ADD_PAYMENT_METHOD
            else "activated"
        )
    if session.type == E.CheckoutSessionType.PRODUCT:
        if s.exec(
            select(Subscription.id).where(Subscription.stripe_setup_intent_id == intent.id)
        ).first():
            return "subscription already created"
        price = s.get(Price, session.price_id or "")
        if price is None:
            raise BillingError(f"checkout session {session.id} names no existing price")
        sub, _, run = setup.subscription(
            s, customer, price, method, start=s.info["now"], quantity=session.quantity or 1
        )
        sub.stripe_setup_intent_id = intent.id
        if run is not None:
            b.queue_billing_run(s, run.id)
        replaced = setup.replace_free_subscription(
            b, s, sub
        )  # free → paid: the free one ends (§7.2)
        setup.notify_subscription_created(
            b, s, sub, replaced
        )  # created (or upgraded) emails (§7.2, §10)
        return f"subscription {sub.id} created"
    raise BillingError(f"checkout sessions of type {session.type!r} are not supported by flowjobs")
