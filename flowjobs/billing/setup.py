"""Creating the billing objects a subscription needs — for `flowjobs demo seed` and tests.

(Subscription creation through checkout is upstream's web app, outside the job system; this
is the subset of §7.2 the jobs depend on: one item per subscription, the first period, and
its billing run due at the period start — picked up by the next hourly `attempt-billing-runs`.)
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlmodel import col, select

from flowjobs import ids
from flowjobs.billing import enums as E
from flowjobs.billing.models import (
    BillingPeriod,
    BillingPeriodItem,
    BillingRun,
    Country,
    Customer,
    DiscountRedemption,
    Membership,
    Organization,
    PaymentMethod,
    Price,
    Product,
    Subscription,
    SubscriptionItem,
    User,
)
from flowjobs.billing.money import normalise_currency
from flowjobs.billing.periods import period_end

INVOICE_BASE_ALPHABET = "ABCDEF0123456789"


def country(s, code: str, name: str | None = None) -> Country:
    found = s.exec(select(Country).where(Country.code == code.upper())).first()
    if found:
        return found
    row = Country(id=ids.new_id("country"), code=code.upper(), name=name or code.upper())
    s.add(row)
    return row


def organization(
    s, name: str, *, currency: str = "USD", country_code: str = "US", **fields
) -> Organization:
    org = Organization(
        id=ids.new_id("org"),
        name=name,
        country_id=country(s, country_code).id,
        default_currency=normalise_currency(currency),
        **fields,
    )
    s.add(org)
    return org


def member(
    s,
    org: Organization,
    email: str,
    *,
    role: str = E.MembershipRole.OWNER,
    preferences: dict | None = None,
) -> Membership:
    user = User(id=ids.new_id("user"), email=email, name=email.split("@")[0])
    s.add(user)
    row = Membership(
        id=ids.new_id("memb"),
        user_id=user.id,
        organization_id=org.id,
        role=role,
        notification_preferences=preferences or {},
    )
    s.add(row)
    return row


def customer(
    s,
    org: Organization,
    *,
    email: str,
    name: str,
    stripe_customer_id: str | None = None,
    livemode: bool = False,
    billing_address: dict | None = None,
) -> Customer:
    row = Customer(
        id=ids.new_id("cust"),
        livemode=livemode,
        organization_id=org.id,
        email=email,
        name=name,
        invoice_number_base="".join(secrets.choice(INVOICE_BASE_ALPHABET) for _ in range(7)),
        stripe_customer_id=stripe_customer_id,
        external_id=ids.new_id("ext"),
        billing_address=billing_address,
    )
    s.add(row)
    return row


def card(
    s,
    cust: Customer,
    *,
    stripe_payment_method_id: str | None,
    last4: str = "4242",
    country_code: str = "US",
) -> PaymentMethod:
    """A card row from values the caller already has (tests, the demo's `attach_card` answer).
    A payment method Stripe reports (a SetupIntent) is recorded by `payment_method_from_stripe`."""
    row = PaymentMethod(
        id=ids.new_id("pm"),
        livemode=cust.livemode,
        customer_id=cust.id,
        billing_details={
            "name": cust.name,
            "email": cust.email,
            "address": {"country": country_code},
        },
        type=E.PaymentMethodType.CARD,
        default=True,
        payment_method_data={"last4": last4, "country": country_code},
        stripe_payment_method_id=stripe_payment_method_id,
    )
    s.add(row)
    return row


CARD_FIELDS = ("brand", "last4", "exp_month", "exp_year", "country", "funding")
METHOD_FIELDS: dict[str, tuple[str, ...]] = {  # by the `type` Stripe sends
    E.PaymentMethodType.CARD: CARD_FIELDS,
    E.PaymentMethodType.US_BANK_ACCOUNT: ("bank_name", "last4", "account_type"),
    E.PaymentMethodType.SEPA_DEBIT: ("last4", "country", "bank_code"),
    E.PaymentMethodType.LINK: ("email",),
}


def payment_method_from_stripe(
    s, cust: Customer, stripe_pm: dict | None, *, default: bool = True
) -> PaymentMethod:
    """A payment method row from the Stripe PaymentMethod object: its type, billing details, and
    what Stripe says about the instrument (card brand, last4, expiry, issuing country) — nothing
    assumed. A field Stripe leaves empty stays absent (the fee rule then refuses an unknown
    country rather than guess)."""
    from flowjobs.billing.repo import BillingError

    if not stripe_pm or not stripe_pm.get("id"):
        raise BillingError("the Stripe PaymentMethod could not be read; nothing recorded")
    kind = stripe_pm.get("type") or ""
    if kind not in METHOD_FIELDS:
        raise BillingError(
            f"Stripe PaymentMethod {stripe_pm['id']} is of type {kind!r}, which flowjobs "
            f"does not bill ({', '.join(METHOD_FIELDS)})"
        )
    details = stripe_pm.get(kind) or {}
    data = {k: details[k] for k in METHOD_FIELDS[kind] if details.get(k) not in (None, "")}
    if data.get("country"):
        data["country"] = str(data["country"]).upper()
    livemode = stripe_pm.get("livemode")
    row = PaymentMethod(
        id=ids.new_id("pm"),
        livemode=cust.livemode if livemode is None else bool(livemode),
        customer_id=cust.id,
        billing_details=dict(stripe_pm.get("billing_details") or {}),
        type=kind,
        default=default,
        payment_method_data=data,
        stripe_payment_method_id=stripe_pm["id"],
    )
    s.add(row)
    return row


def stripe_payment_method(b, intent) -> dict | None:
    """The Stripe PaymentMethod object a SetupIntent (a dict or a validated shape) names, read
    from Stripe before any database transaction opens — or None when there is nothing to
    record: no checkout session for the intent, a finished one, or a method already recorded."""
    from flowjobs.billing.models import CheckoutSession

    value = (
        intent.get("payment_method")
        if isinstance(intent, dict)
        else getattr(intent, "payment_method", None)
    )
    if isinstance(value, dict) and value.get("type"):
        return value  # expanded in the event: the object itself
    pm_id = value.get("id") if isinstance(value, dict) else getattr(value, "id", value)
    intent_id = intent.get("id") if isinstance(intent, dict) else getattr(intent, "id", None)
    if not pm_id or not intent_id:
        return None
    with b.unit() as s:
        session = s.exec(
            select(CheckoutSession).where(CheckoutSession.stripe_setup_intent_id == intent_id)
        ).first()
        known = s.exec(
            select(PaymentMethod.id).where(PaymentMethod.stripe_payment_method_id == pm_id)
        ).first()
        if (
            session is None
            or known is not None
            or session.status
            in (
                E.CheckoutSessionStatus.SUCCEEDED,
                E.CheckoutSessionStatus.FAILED,
                E.CheckoutSessionStatus.EXPIRED,
            )
        ):
            return None
        livemode = session.livemode
    return b.gateway.retrieve_payment_method(livemode, pm_id)


def priced_product(
    s, org: Organization, name: str, unit_price: int, *, livemode: bool = False, **price_fields
) -> Price:
    """A product of `org` named `name` (slug from the name) with one price in the organisation's
    currency, both added to the session; `price_fields`: its type and interval."""
    product = Product(
        id=ids.new_id("prod"),
        livemode=livemode,
        name=name,
        organization_id=org.id,
        slug=name.lower().replace(" ", "-"),
    )
    s.add(product)
    price = Price(
        id=ids.new_id("price"),
        livemode=livemode,
        unit_price=unit_price,
        product_id=product.id,
        currency=org.default_currency,
        name=name,
        **price_fields,
    )
    s.add(price)
    return price


def plan(
    s,
    org: Organization,
    name: str,
    unit_price: int,
    *,
    interval: str = E.IntervalUnit.MONTH,
    count: int = 1,
    livemode: bool = False,
) -> Price:
    return priced_product(
        s,
        org,
        name,
        unit_price,
        livemode=livemode,
        type=E.PriceType.SUBSCRIPTION,
        interval_unit=interval,
        interval_count=count,
    )


def subscription(
    s,
    cust: Customer,
    price: Price,
    method: PaymentMethod | None,
    *,
    start: datetime,
    quantity: int = 1,
    trial_end: datetime | None = None,
    do_not_charge: bool = False,
    run_billing_at_period_start: bool = True,
) -> tuple[Subscription, BillingPeriod, BillingRun | None]:
    """A standard renewing subscription with its first period and (when chargeable) billing run."""
    from flowjobs.billing.repo import BillingError

    now = s.info["now"]
    if price.name is None:
        raise BillingError(f"price {price.id} has no name to give the subscription's items")
    org = s.get(Organization, cust.organization_id)
    if org is not None and price.currency and price.currency.upper() != org.default_currency:
        # its billing runs charge in the organisation's currency (spec §7.4), so the price's
        # amounts would be charged as that currency's (2500 EUR cents as 25.00 USD)
        raise BillingError(
            f"price {price.id} is in {price.currency.upper()}, and organization {org.id} bills "
            f"in {org.default_currency}: subscribe the customer to a price in "
            f"{org.default_currency}"
        )
    if trial_end is not None and trial_end > start:
        trialing, end = True, trial_end
    else:
        trialing = False
        end = period_end(start, price.interval_unit, price.interval_count)
    status = (
        E.SubscriptionStatus.TRIALING
        if trialing
        else E.SubscriptionStatus.ACTIVE
        if (method or do_not_charge)
        else E.SubscriptionStatus.INCOMPLETE
    )
    sub = Subscription(
        id=ids.new_id("sub"),
        livemode=cust.livemode,
        start_date=start,
        customer_id=cust.id,
        organization_id=cust.organization_id,
        status=status,
        default_payment_method_id=method.id if method else None,
        trial_end=trial_end if trialing else None,
        current_billing_period_start=start,
        current_billing_period_end=end,
        is_free_plan=price.unit_price == 0,
        do_not_charge=do_not_charge,
        price_id=price.id,
        run_billing_at_period_start=run_billing_at_period_start,
        interval=price.interval_unit,
        interval_count=price.interval_count,
        billing_cycle_anchor_date=start,
        name=price.name,
    )
    s.add(sub)
    label = price.name + (f" x {quantity}" if quantity != 1 else "")
    s.add(
        SubscriptionItem(
            id=ids.new_id("si"),
            livemode=cust.livemode,
            subscription_id=sub.id,
            name=label,
            added_date=start,
            price_id=price.id,
            unit_price=0 if do_not_charge else price.unit_price,
            quantity=quantity,
        )
    )
    period = BillingPeriod(
        id=ids.new_id("billing_period"),
        livemode=cust.livemode,
        subscription_id=sub.id,
        start_date=start,
        end_date=end,
        trial_period=trialing,
        status=E.BillingPeriodStatus.ACTIVE if start <= now else E.BillingPeriodStatus.UPCOMING,
    )
    s.add(period)
    if not trialing:
        s.add(
            BillingPeriodItem(
                id=ids.new_id("billing_period_item"),
                livemode=cust.livemode,
                billing_period_id=period.id,
                quantity=quantity,
                unit_price=0 if do_not_charge else price.unit_price,
                name=label,
            )
        )
    run = None
    if method is not None and not do_not_charge:
        run = BillingRun(
            id=ids.new_id("billing_run"),
            livemode=cust.livemode,
            billing_period_id=period.id,
            scheduled_for=start if run_billing_at_period_start else end,
            subscription_id=sub.id,
            payment_method_id=method.id,
        )
        s.add(run)
    from flowjobs.outbound.emit import emit_event  # spec §7.2: the subscription.created event

    emit_event(
        s,
        E.FlowgladEventType.SUBSCRIPTION_CREATED,
        E.EventNoun.SUBSCRIPTION,
        sub.id,
        organization_id=sub.organization_id,
        livemode=sub.livemode,
        customer=cust,
    )
    s.flush()
    return sub, period, run


def replace_free_subscription(b, s, sub: Subscription) -> Subscription | None:
    """Spec §7.2: creating a paid subscription ends the customer's current free one — canceled
    now, `cancellation_reason=upgraded_to_paid`, `replaced_by_subscription_id` = the new one
    (no cancellation emails: the customer hears of the upgrade). Returns the free subscription
    replaced, or None."""
    from flowjobs.billing import repo
    from flowjobs.billing.cancel import abort_scheduled_runs

    price = s.get(Price, sub.price_id or "")
    if sub.is_free_plan or price is None or price.unit_price <= 0:
        return None
    free = s.exec(
        select(Subscription)
        .where(
            Subscription.customer_id == sub.customer_id,
            Subscription.id != sub.id,
            Subscription.is_free_plan == True,
            col(Subscription.status).not_in(list(E.SUBSCRIPTION_TERMINAL)),
        )
        .order_by(col(Subscription.created_at))
    ).first()
    if free is None:
        return None
    now = s.info["now"]
    free.canceled_at = now
    free.cancellation_reason = E.CancellationReason.UPGRADED_TO_PAID
    free.replaced_by_subscription_id = sub.id
    repo.set_subscription_status(free, E.SubscriptionStatus.CANCELED)
    abort_scheduled_runs(s, free.id)
    return free


def notify_subscription_created(
    b, s, sub: Subscription, replaced: Subscription | None = None
) -> list[str]:
    """Trigger the emails of a subscription just created by a flow (spec §7.2, §10; the
    `product` checkout of `setup_intent.succeeded`): the organisation's subscription-created,
    and the customer's subscription-created — or subscription-upgraded when it replaced the
    customer's free subscription (`replaced`). Only for a paid plan (a free plan or a $0 price
    sends none; `do_not_charge` still does, the email says so) and never for a trial without a
    payment method. Keys are per subscription, so a replayed creation sends nothing twice.
    Returns the task ids triggered."""
    price = s.get(Price, sub.price_id or "")
    if sub.is_free_plan or price is None or price.unit_price <= 0:  # upstream: none for free plans
        return []
    if sub.status == E.SubscriptionStatus.TRIALING and not sub.default_payment_method_id:
        return []
    org_task = "send-organization-subscription-created-notification"
    if replaced is not None:
        customer_task = "send-customer-subscription-upgraded-notification"
        b.trigger(
            s,
            customer_task,
            {
                "customerId": sub.customer_id,
                "newSubscriptionId": sub.id,
                "previousSubscriptionId": replaced.id,
                "organizationId": sub.organization_id,
            },
            key=f"{customer_task}-{sub.id}-{replaced.id}",
        )
    else:
        customer_task = "send-customer-subscription-created-notification"
        b.trigger(
            s,
            customer_task,
            {
                "customerId": sub.customer_id,
                "subscriptionId": sub.id,
                "organizationId": sub.organization_id,
            },
            key=f"{customer_task}-{sub.id}",
        )
    b.trigger(
        s,
        org_task,
        {
            "subscription": {
                "id": sub.id,
                "customerId": sub.customer_id,
                "organizationId": sub.organization_id,
                "name": sub.name,
                "status": sub.status,
                "livemode": sub.livemode,
            }
        },
        key=f"{org_task}-{sub.id}",
    )
    return [customer_task, org_task]


def invoice_lines(s, invoice, items, *, billing_run_id: str | None = None) -> None:
    """One static invoice line per billing period item (as a billing run writes them)."""
    from flowjobs.billing.models import InvoiceLineItem

    for item in items:
        if item.quantity <= 0:
            continue
        s.add(
            InvoiceLineItem(
                id=ids.new_id("inv_li"),
                livemode=invoice.livemode,
                invoice_id=invoice.id,
                quantity=item.quantity,
                price=item.unit_price,
                billing_run_id=billing_run_id,
                description=f"{item.name} - {item.description}" if item.description else item.name,
                type=E.SubscriptionItemType.STATIC,
            )
        )


def discount(
    s,
    sub: Subscription,
    *,
    amount: int,
    amount_type: str = E.DiscountAmountType.PERCENT,
    code: str = "WELCOME",
    duration: str = E.DiscountDuration.FOREVER,
    number_of_payments: int | None = None,
) -> DiscountRedemption:
    row = DiscountRedemption(
        id=ids.new_id("discount_redemption"),
        livemode=sub.livemode,
        discount_id=ids.new_id("discount"),
        subscription_id=sub.id,
        discount_name=code.title(),
        discount_code=code,
        discount_amount=amount,
        discount_amount_type=amount_type,
        duration=duration,
        number_of_payments=number_of_payments,
    )
    s.add(row)
    return row
