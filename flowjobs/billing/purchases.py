"""One-time checkout payments (spec §8.2 `payment_intent.succeeded` for checkout sessions,
§8.3 payment sync, §4.6 purchase status; docs/billing.md "One-time purchases").

A checkout session of type `product` for a one-time (`single_payment`) price, or of type
`purchase` (it names its purchase), is paid by a PaymentIntent whose metadata is
`{"type": "checkout_session", "checkoutSessionId": <session id>}` (upstream's keys,
`intent_metadata`). Every PaymentIntent event of such a session, and `charge.failed` for its
charges, comes here (`record_checkout_charge`):

1. The charge is read from Stripe first (no transaction is open during the call): its current
   status, amount, date and failure reason decide, not the event's copy — a late or replayed
   event can only confirm what Stripe says now.
2. In one unit of work, the session's row locked: the purchase (created on the session's first charge when the session
   has none; the session's discount redemption then gets its `purchase_id`), its invoice
   (type `purchase`, one line: the price × quantity; the discount fixed in `subtotal`), and the
   payment upserted by `stripe_charge_id` (one row per charge however often it is reported).
   The payment moves only out of non-terminal statuses (repo.set_payment_status): a `failed`
   never replaces a `succeeded`.
3. The invoice is `paid` once its succeeded payments cover its total (totals.invoice_totals:
   after discount and tax); the purchase is `paid` then (§4.6), `failed` when the PaymentIntent
   is canceled, else `pending`; a paid purchase is never moved back by another charge.
4. Only on a payment's transition: into `succeeded` — the discount redemption advances
   (`once` → fully redeemed; `number_of_payments` → when the purchase's succeeded payments
   reach N; `forever` → never), the invoice PDF and the receipt PDF are rendered (by the
   receipt email itself for a paid live-mode invoice — two renderers at once could delete the
   file the other attaches — else by their tasks), the customer receipt (invoice paid) and the
   organisation payment-succeeded emails are sent; into
   `failed` — the customer and organisation payment-failed emails (not when the purchase is
   already paid: a declined attempt before a successful one is recorded, not announced).
   Each follow-up also carries an idempotency key, so a replay cannot send twice.
5. Event rows through the outbound emit path: `payment.succeeded` / `payment.failed` (a failed
   or canceled payment) per payment and `purchase.completed` per purchase (hash of type + id).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from flowjobs import ids
from flowjobs.billing import enums as E
from flowjobs.billing import repo, setup
from flowjobs.billing.models import (
    CheckoutSession,
    Customer,
    DiscountRedemption,
    Invoice,
    InvoiceLineItem,
    Payment,
    Price,
    Product,
    Purchase,
)
from flowjobs.billing.repo import BillingError
from flowjobs.billing.totals import Discount, Totals, compute, invoice_totals
from flowjobs.billing.types import utc_from_ms

SESSION_KEY = "checkoutSessionId"
CHECKOUT_TYPES = {E.CheckoutSessionType.PRODUCT, E.CheckoutSessionType.PURCHASE}
PURCHASE_SETTLED = {
    E.PurchaseStatus.PAID,
    E.PurchaseStatus.REFUNDED,
    E.PurchaseStatus.PARTIAL_REFUND,
    E.PurchaseStatus.FRAUDULENT,
}
CHARGE_STATUS = {
    "succeeded": E.PaymentStatus.SUCCEEDED,
    "failed": E.PaymentStatus.FAILED,
}  # anything else (pending) → processing


def intent_metadata(checkout_session_id: str) -> dict[str, str]:
    """The metadata a checkout session's PaymentIntent carries (upstream's keys)."""
    return {"type": E.IntentMetadataType.CHECKOUT_SESSION, SESSION_KEY: checkout_session_id}


def session_of(metadata: dict) -> str | None:
    """The checkout session a PaymentIntent's metadata names, or None (billing runs, others)."""
    if metadata.get("type", E.IntentMetadataType.CHECKOUT_SESSION) != "checkout_session":
        return None
    return metadata.get(SESSION_KEY) or None


@dataclass(frozen=True)
class Charge:
    """The Stripe Charge fields a checkout payment is recorded from."""

    id: str
    status: str  # succeeded | pending | failed
    amount: int
    created: int  # epoch seconds
    payment_method_type: str
    failure_code: str | None = None
    failure_message: str | None = None
    currency: str | None = None  # as Stripe writes it (lower case); None: not said
    amount_refunded: int = 0  # Stripe keeps a refunded charge `succeeded`

    @classmethod
    def from_stripe(cls, charge: dict) -> Charge:
        details = charge.get("payment_method_details") or {}
        kind = details.get("type") or E.PaymentMethodType.CARD
        return cls(
            charge["id"],
            charge.get("status") or "pending",
            int(charge.get("amount") or 0),
            int(charge.get("created") or 0),
            kind if kind in set(E.PaymentMethodType) else E.PaymentMethodType.CARD,
            charge.get("failure_code"),
            charge.get("failure_message"),
            charge.get("currency") or None,
            int(charge.get("amount_refunded") or 0),
        )


# -- what a session costs -------------------------------------------------------------------
def checkout_totals(s, session: CheckoutSession) -> Totals:
    """The money of the session: its purchase's invoice once there is one, else price ×
    quantity less its discount — the amount its PaymentIntent is created for."""
    purchase = s.get(Purchase, session.purchase_id) if session.purchase_id else None
    invoice = _invoice_of(s, purchase) if purchase else None
    if invoice is not None:
        return invoice_totals(s, invoice)
    price = _price(s, session, purchase)
    quantity = purchase.quantity if purchase else session.quantity or 1
    redemption = _redemption(s, session, purchase)
    rule = (
        Discount(redemption.discount_amount_type, redemption.discount_amount)
        if redemption
        else None
    )
    return compute(
        price.currency,
        [(price.unit_price, quantity)],
        discount=rule,
        discount_code=redemption.discount_code if redemption else None,
    )


def amount_due(s, session: CheckoutSession) -> int:
    return checkout_totals(s, session).due


# -- recording a charge ---------------------------------------------------------------------
def record_checkout_charge(
    b,
    session_id: str,
    *,
    intent_id: str,
    intent_status: str,
    charge_id: str | None,
    livemode: bool | None,
) -> dict:
    """Record what the PaymentIntent `intent_id` of checkout session `session_id` came to.

    `livemode` is the event's mode (where the Stripe objects live); None: the session's."""
    with b.unit() as s:
        session = s.get(CheckoutSession, session_id)
        if session is None:
            return {"result": "ignored", "detail": f"no checkout session {session_id}"}
        if livemode is not None and livemode != session.livemode:
            # a test-mode charge paid a live purchase (and sent its live receipt)
            return {
                "result": "ignored",
                "detail": f"a {_mode(livemode)} event names {_mode(session.livemode)} checkout "
                f"session {session_id}; not recorded",
            }
        mode = session.livemode
    charge = Charge.from_stripe(b.gateway.retrieve_charge(mode, charge_id)) if charge_id else None
    with b.unit() as s:
        session = _locked(s, session_id)  # one charge of a session at a time (PostgreSQL)
        if session.type not in CHECKOUT_TYPES:
            raise BillingError(
                f"checkout session {session.id} is of type {session.type!r}: "
                "only product and purchase sessions are paid by a PaymentIntent"
            )
        if charge is None:  # nothing charged: canceled before any attempt, or awaiting the customer
            return _without_charge(s, session, intent_id, intent_status)
        return _record(b, s, session, intent_id, intent_status, charge)


def _without_charge(s, session, intent_id: str, intent_status: str) -> dict:
    purchase = s.get(Purchase, session.purchase_id) if session.purchase_id else None
    if intent_status == "canceled":
        if purchase is not None and purchase.status not in PURCHASE_SETTLED:
            purchase.status = E.PurchaseStatus.FAILED
        if session.status != E.CheckoutSessionStatus.SUCCEEDED:
            session.status = E.CheckoutSessionStatus.FAILED
    return {
        "result": "no charge",
        "detail": f"PaymentIntent {intent_id} is {intent_status} and has not charged",
        "checkoutSessionId": session.id,
        "checkoutSessionStatus": session.status,
    }


def _mode(livemode: bool) -> str:
    return "live-mode" if livemode else "test-mode"


def _record(b, s, session, intent_id: str, intent_status: str, charge: Charge) -> dict:
    purchase = ensure_purchase(s, session)
    invoice = ensure_invoice(s, session, purchase)
    if charge.currency and charge.currency.upper() != invoice.currency.upper():
        # JPY 4900 (about $33) paid a USD 49.00 purchase, stored as 4900 USD
        raise BillingError(
            f"charge {charge.id} is in {charge.currency.upper()}, but checkout session "
            f"{session.id} sells in {invoice.currency.upper()}; not recorded"
        )
    target = CHARGE_STATUS.get(charge.status, E.PaymentStatus.PROCESSING)
    refunded = target == E.PaymentStatus.SUCCEEDED and charge.amount_refunded >= charge.amount > 0
    if refunded:  # refunded in full before we saw it (Stripe keeps it `succeeded`): pays nothing
        target = E.PaymentStatus.REFUNDED
    if intent_status == "requires_capture" and target == E.PaymentStatus.SUCCEEDED:
        target = E.PaymentStatus.PROCESSING  # authorised, not captured: no money moved yet
    if intent_status == "canceled" and target != E.PaymentStatus.FAILED:
        target = E.PaymentStatus.CANCELED  # an authorisation released, never captured
    payment, inserted = upsert_payment(s, session, purchase, invoice, intent_id, charge, target)
    changed = inserted or repo.set_payment_status(payment, target)
    if refunded and not payment.refunded_amount:  # (later: `charge.refunded`, refunds.py)
        # a row already there (`processing`) turned `refunded` too: its amount was left empty
        payment.refunded, payment.refunded_amount = True, payment.amount
        payment.refunded_at = s.info["now"]
    if changed and payment.status == E.PaymentStatus.FAILED:
        payment.failure_code = charge.failure_code
        payment.failure_message = charge.failure_message
    was_paid = purchase.status in PURCHASE_SETTLED
    s.flush()
    _settle_invoice(s, invoice)
    _sync_purchase(purchase, payment, invoice, intent_status)
    _sync_session(session, purchase, payment, intent_status)
    if changed:
        _follow_ups(b, s, payment, invoice, purchase, was_paid)
    _emit(s, payment, purchase)
    if charge.amount_refunded and payment.status == E.PaymentStatus.SUCCEEDED:
        # refunded in part before this payment was recorded (its charge.refunded came first,
        # found no payment, and was ignored): recorded now, as that event would have — after
        # the receipt and purchase.completed of what was paid (before, neither was sent)
        from flowjobs.billing.refunds import record_refund

        record_refund(
            s, payment, charge.amount_refunded, payment.amount, charge.currency, s.info["now"]
        )
    return {
        "result": payment.status if changed else "unchanged",
        "checkoutSessionId": session.id,
        "purchaseId": purchase.id,
        "invoiceId": invoice.id,
        "paymentId": payment.id,
        "paymentStatus": payment.status,
        "invoiceStatus": invoice.status,
        "purchaseStatus": purchase.status,
    }


def ensure_purchase(s, session: CheckoutSession) -> Purchase:
    """The session's purchase; a `product` session gets one on its first charge."""
    if session.purchase_id:
        purchase = s.get(Purchase, session.purchase_id)
        if purchase is None:
            raise BillingError(f"checkout session {session.id} names no existing purchase")
        return purchase
    if session.type != E.CheckoutSessionType.PRODUCT:
        raise BillingError(f"purchase checkout session {session.id} names no purchase")
    price = _price(s, session, None)
    if price.type != E.PriceType.SINGLE_PAYMENT:
        raise BillingError(
            f"checkout session {session.id} sells {price.type} price {price.id}: only one-time "
            "(single_payment) prices are paid by a PaymentIntent; subscriptions start from the "
            "SetupIntent (setup_intent.succeeded)"
        )
    if not session.customer_id or s.get(Customer, session.customer_id) is None:
        raise BillingError(f"checkout session {session.id} names no existing customer")
    product = s.get(Product, price.product_id) if price.product_id else None
    quantity = session.quantity or 1
    purchase = Purchase(
        id=ids.new_id("prch"),
        livemode=session.livemode,
        name=(product.name if product else None) or price.name or "Purchase",
        status=E.PurchaseStatus.OPEN,
        customer_id=session.customer_id,
        organization_id=session.organization_id,
        price_id=price.id,
        quantity=quantity,
        price_type=E.PriceType.SINGLE_PAYMENT,
        first_invoice_value=price.unit_price * quantity,
        total_purchase_value=price.unit_price * quantity,
    )
    s.add(purchase)
    session.purchase_id = purchase.id
    redemption = (
        s.get(DiscountRedemption, session.discount_redemption_id)
        if session.discount_redemption_id
        else None
    )
    if redemption is not None and redemption.purchase_id is None:
        redemption.purchase_id = purchase.id
    s.flush()
    return purchase


def ensure_invoice(s, session: CheckoutSession, purchase: Purchase) -> Invoice:
    """The purchase's invoice (type `purchase`), created once with its one line and its money."""
    invoice = _invoice_of(s, purchase)
    if invoice is not None:
        return invoice
    money = checkout_totals(s, session)
    price = s.get(Price, purchase.price_id)
    customer = s.get(Customer, purchase.customer_id)
    now = s.info["now"]
    invoice = Invoice(
        id=ids.new_id("inv"),
        livemode=purchase.livemode,
        purchase_id=purchase.id,
        invoice_number=repo.allocate_invoice_number(s, customer),
        invoice_date=now,
        due_date=now,
        customer_id=customer.id,
        organization_id=purchase.organization_id,
        status=E.InvoiceStatus.OPEN,  # a PaymentIntent is paying it
        type=E.InvoiceType.PURCHASE,
        currency=price.currency,
        subtotal=money.subtotal,  # fixes the discount of this issued invoice
        tax_amount=money.tax,
    )
    s.add(invoice)
    s.add(
        InvoiceLineItem(
            id=ids.new_id("inv_li"),
            livemode=purchase.livemode,
            invoice_id=invoice.id,
            quantity=purchase.quantity,
            price_id=price.id,
            description=purchase.name,
            price=price.unit_price,
            type=E.SubscriptionItemType.STATIC,
        )
    )
    s.flush()
    return invoice


def upsert_payment(s, session, purchase, invoice, intent_id: str, charge: Charge, status: str):
    """(payment, inserted): the row of this charge, inserted on first sight (spec §8.3)."""
    found = s.exec(select(Payment).where(Payment.stripe_charge_id == charge.id)).first()
    if found is not None:
        return found, False
    payment = Payment(
        id=ids.new_id("pym"),
        livemode=session.livemode,
        invoice_id=invoice.id,
        amount=charge.amount,
        payment_method=charge.payment_method_type,
        currency=invoice.currency,
        status=status,
        charge_date=utc_from_ms(charge.created * 1000) if charge.created else s.info["now"],
        organization_id=purchase.organization_id,
        customer_id=purchase.customer_id,
        purchase_id=purchase.id,
        stripe_payment_intent_id=intent_id,
        stripe_charge_id=charge.id,
        subtotal=invoice.subtotal,
        tax_amount=invoice.tax_amount,
    )
    s.add(payment)
    return payment, True


def _settle_invoice(s, invoice: Invoice) -> None:
    if invoice.status not in E.INVOICE_TERMINAL and invoice_totals(s, invoice).due <= 0:
        repo.set_invoice_status(invoice, E.InvoiceStatus.PAID)


def _sync_purchase(purchase: Purchase, payment: Payment, invoice: Invoice, intent_status) -> None:
    """§4.6, with two deliberate differences: paid only when the invoice is paid, and a paid
    (or refunded) purchase is not moved by another charge of it."""
    if purchase.status in PURCHASE_SETTLED:
        return
    if payment.status == E.PaymentStatus.SUCCEEDED and invoice.status == E.InvoiceStatus.PAID:
        purchase.status = E.PurchaseStatus.PAID
        purchase.purchase_date = payment.charge_date
    elif payment.status == E.PaymentStatus.REFUNDED:  # paid, and refunded before we saw it
        purchase.status = E.PurchaseStatus.REFUNDED
        purchase.purchase_date = payment.charge_date
    elif payment.status == E.PaymentStatus.CANCELED or intent_status == "canceled":
        purchase.status = E.PurchaseStatus.FAILED
    else:  # a declined card: the customer may pay again in the same checkout (upstream too)
        purchase.status = E.PurchaseStatus.PENDING


def _sync_session(session, purchase, payment, intent_status) -> None:
    if session.status == E.CheckoutSessionStatus.SUCCEEDED:
        return
    if purchase.status in (E.PurchaseStatus.PAID, E.PurchaseStatus.REFUNDED):
        session.status = E.CheckoutSessionStatus.SUCCEEDED  # the customer paid
    elif payment.status in E.PAYMENT_PENDING:
        session.status = E.CheckoutSessionStatus.PENDING
    else:  # failed or canceled (upstream: a failed charge fails the session)
        session.status = E.CheckoutSessionStatus.FAILED


def advance_redemption(s, payment: Payment) -> DiscountRedemption | None:
    """§8.2: the purchase's first redemption not fully redeemed, advanced by this payment."""
    if not payment.purchase_id:
        return None
    redemption = s.exec(
        select(DiscountRedemption)
        .where(
            DiscountRedemption.purchase_id == payment.purchase_id,
            DiscountRedemption.fully_redeemed == False,
        )
        .order_by(col(DiscountRedemption.created_at), col(DiscountRedemption.id))
    ).first()
    if redemption is None or redemption.duration == E.DiscountDuration.FOREVER:
        return redemption
    if redemption.duration == E.DiscountDuration.ONCE:
        redemption.fully_redeemed = True
    elif redemption.duration == E.DiscountDuration.NUMBER_OF_PAYMENTS:
        s.flush()
        paid = s.exec(
            select(Payment.id).where(
                Payment.purchase_id == payment.purchase_id,
                Payment.status == E.PaymentStatus.SUCCEEDED,
            )
        ).all()
        if len(paid) >= (redemption.number_of_payments or 1):
            redemption.fully_redeemed = True
    return redemption


def _follow_ups(b, s, payment, invoice, purchase, was_paid: bool) -> None:
    from flowjobs.billing.outcomes import _payment_data, notify_payment_failed

    if payment.status == E.PaymentStatus.SUCCEEDED:
        advance_redemption(s, payment)
        paid = invoice.status == E.InvoiceStatus.PAID
        if not (paid and invoice.livemode):  # else the receipt email renders and attaches both
            b.trigger(  # (two renderers at once: one would delete the PDF the other attaches)
                s,
                "generate-invoice-pdf",
                {"invoiceId": invoice.id},
                key=f"generate-invoice-pdf-{invoice.id}-" + ("paid" if paid else payment.id),
            )
            b.trigger(
                s,
                "generate-payment-receipt-pdf",
                {"paymentId": payment.id},
                key=f"generate-payment-receipt-pdf-{payment.id}",
            )
        if paid:
            b.trigger(
                s,
                "send-customer-payment-succeeded-notification",
                {"paymentId": payment.id},
                key=payment.id,
            )
        b.trigger(
            s,
            "send-organization-payment-succeeded-notification",
            {"paymentData": _payment_data(s, payment, invoice)},
            key=f"send-organization-payment-succeeded-notification-{payment.id}",
        )
    elif payment.status == E.PaymentStatus.FAILED and not was_paid:
        notify_payment_failed(b, s, payment, invoice)


def _emit(s, payment: Payment, purchase: Purchase) -> None:
    from flowjobs.billing.outcomes import emit_payment_event
    from flowjobs.outbound.emit import emit_event

    emit_payment_event(s, payment)  # payment.succeeded / payment.failed, once per payment
    if purchase.status == E.PurchaseStatus.PAID:
        emit_event(
            s,
            E.FlowgladEventType.PURCHASE_COMPLETED,
            E.EventNoun.PURCHASE,
            purchase.id,
            organization_id=purchase.organization_id,
            livemode=purchase.livemode,
            customer=s.get(Customer, purchase.customer_id),
        )


# -- reads ------------------------------------------------------------------------------------
def _locked(s, session_id: str) -> CheckoutSession:
    """The session, its row locked until the unit ends: two events of one session (a decline's
    `charge.failed` and `payment_intent.payment_failed`, two PaymentIntents) handled at once
    would each create the purchase. SQLite's `BEGIN IMMEDIATE` already serialises the units."""
    return s.exec(
        select(CheckoutSession).where(CheckoutSession.id == session_id).with_for_update()
    ).one()


def _invoice_of(s, purchase: Purchase) -> Invoice | None:
    return s.exec(
        select(Invoice)
        .where(Invoice.purchase_id == purchase.id)
        .order_by(col(Invoice.created_at), col(Invoice.id))
    ).first()


def _price(s, session: CheckoutSession, purchase: Purchase | None) -> Price:
    price_id = purchase.price_id if purchase else session.price_id
    price = s.get(Price, price_id or "")
    if price is None:
        raise BillingError(f"checkout session {session.id} names no existing price")
    return price


def _redemption(s, session, purchase) -> DiscountRedemption | None:
    if session.discount_redemption_id:
        return s.get(DiscountRedemption, session.discount_redemption_id)
    if purchase is None:
        return None
    return s.exec(
        select(DiscountRedemption)
        .where(
            DiscountRedemption.purchase_id == purchase.id,
            DiscountRedemption.fully_redeemed == False,
        )
        .order_by(col(DiscountRedemption.created_at), col(DiscountRedemption.id))
    ).first()


# -- set-up (demo seed, tests): what the checkout web app creates ----------------------------
def one_time_price(s, org, name: str, unit_price: int, *, livemode: bool = False) -> Price:
    """A product with a `single_payment` price."""
    return setup.priced_product(
        s, org, name, unit_price, livemode=livemode, type=E.PriceType.SINGLE_PAYMENT
    )


def checkout_session(
    s,
    customer: Customer,
    price: Price,
    *,
    quantity: int = 1,
    livemode: bool = False,
    discount: tuple[int, str, str] | None = None,
    number_of_payments: int | None = None,
    kind: str = E.CheckoutSessionType.PRODUCT,
) -> CheckoutSession:
    """An open checkout session for `price`: a `product` session, or a `purchase` session for
    a purchase made now (status `open`); `discount` = (amount, amount type, duration) makes
    its discount redemption (code `LAUNCH`)."""
    purchase = None
    if kind == E.CheckoutSessionType.PURCHASE:
        purchase = Purchase(
            id=ids.new_id("prch"),
            livemode=livemode,
            name=price.name or "Purchase",
            customer_id=customer.id,
            organization_id=customer.organization_id,
            price_id=price.id,
            quantity=quantity,
            price_type=price.type,
            first_invoice_value=price.unit_price * quantity,
            total_purchase_value=price.unit_price * quantity,
        )
        s.add(purchase)
    session = CheckoutSession(
        id=ids.new_id("chckt_session"),
        livemode=livemode,
        type=kind,
        purchase_id=purchase.id if purchase else None,
        organization_id=customer.organization_id,
        customer_id=customer.id,
        price_id=price.id,
        quantity=quantity,
        customer_email=customer.email,
        customer_name=customer.name,
    )
    if discount is not None:
        amount, amount_type, duration = discount
        redemption = DiscountRedemption(
            id=ids.new_id("discount_redemption"),
            livemode=livemode,
            discount_id=ids.new_id("discount"),
            discount_name="Launch",
            discount_code="LAUNCH",
            discount_amount=amount,
            discount_amount_type=amount_type,
            duration=duration,
            number_of_payments=number_of_payments,
            purchase_id=purchase.id if purchase else None,
        )
        s.add(redemption)
        session.discount_redemption_id = redemption.id
    s.add(session)
    s.flush()
    return session
