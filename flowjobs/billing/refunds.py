"""Refunds made at Stripe (the dashboard, the API): what a `charge.refunded` event says is
recorded on the payment, its invoice and its purchase.

Stripe's charge carries the total refunded so far (`amount_refunded`), so each event says the
whole of it: the amounts only grow, and an older event delivered late (or twice) changes
nothing. A payment refunded in part stays `succeeded` with `refunded_amount`; refunded in full
it is `refunded` (`refunded`, `refunded_at`). Its invoice goes from `paid` to
`partially_refunded`, or `refunded` once every payment of it is refunded in full; a one-time
purchase to `partial_refund` or `refunded`, once every payment of it is. A refund is the
merchant's money given back, not a debt: a refunded invoice owes nothing (`invoice_totals`),
is never moved back to `paid`, and its period closes `completed` (`close_period` counts its
payments gross); a closed period is not reopened. Not built:
disputes (`charge.dispute.*`), and refunds of payments flowjobs never recorded (ignored, said so).
Upstream Flowglad records refunds made through its own API only; a refund made at Stripe left
the payment `succeeded` and the invoice `paid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select

from flowjobs.billing import enums as E
from flowjobs.billing.models import Invoice, Payment, Purchase
from flowjobs.billing.repo import BillingError

REFUNDABLE = {E.PaymentStatus.SUCCEEDED, E.PaymentStatus.REFUNDED}


@dataclass
class Refunded:
    result: str  # refunded | partially refunded | unchanged | ignored
    detail: str | None = None

    def as_dict(self, payment: Payment | None) -> dict:
        out: dict = {"result": self.result}
        if payment is not None:
            out |= {
                "paymentId": payment.id,
                "status": payment.status,
                "refundedAmount": payment.refunded_amount or 0,
            }
        if self.detail:
            out["detail"] = self.detail
        return out


class NotSettledYet(Exception):
    """The refunded charge's payment is not recorded as succeeded yet (Stripe does not deliver
    in order: the refund came before `payment_intent.succeeded`): the handler retries."""


def record_refund(
    s,
    payment: Payment,
    amount_refunded: int,
    charge_amount: int,
    currency: str | None,
    at: datetime,
) -> Refunded:
    """Record that `amount_refunded` of the charge of `payment` (of `charge_amount`, in
    `currency`) is refunded, as of `at`."""
    if payment.status in E.PAYMENT_PENDING:  # ignored, it was lost for good
        raise NotSettledYet(
            f"payment {payment.id} is {payment.status}: its refund is recorded once it succeeded"
        )
    if payment.status not in REFUNDABLE:
        return Refunded(
            "ignored", f"payment {payment.id} is {payment.status}: only a succeeded one is refunded"
        )
    if currency and currency.upper() != payment.currency.upper():
        raise BillingError(
            f"the refunded charge is in {currency.upper()}, payment {payment.id} in "
            f"{payment.currency.upper()}; not recorded"
        )
    if charge_amount != payment.amount:  # the charge's own total says "in full"
        raise BillingError(
            f"the refunded charge is of {charge_amount}, payment {payment.id} of "
            f"{payment.amount} {payment.currency}; not recorded"
        )
    refunded = min(amount_refunded, payment.amount)
    if refunded <= (payment.refunded_amount or 0):
        return Refunded("unchanged", "an event saying as much or more was recorded already")
    payment.refunded_amount = refunded
    payment.refunded_at = at
    full = refunded >= payment.amount
    if full:
        payment.refunded = True
        payment.status = E.PaymentStatus.REFUNDED  # from succeeded: the one way out of it
    every = _invoice(s, payment)
    _purchase(s, payment, every)
    return Refunded("refunded" if full else "partially refunded")


def lock_invoice(s, payment: Payment) -> Invoice | None:
    """The payment's invoice, its row locked (PostgreSQL): two refunds of two payments of one
    invoice at once each saw the other not refunded, and the invoice stayed partly refunded."""
    if not payment.invoice_id:
        return None
    return s.exec(select(Invoice).where(Invoice.id == payment.invoice_id).with_for_update()).first()


def _invoice(s, payment: Payment) -> bool:
    """Move the payment's invoice to `partially_refunded` or `refunded`; whether every payment
    of it is refunded in full."""
    payments = s.exec(
        select(Payment).where(
            Payment.invoice_id == payment.invoice_id,
            Payment.status.in_(list(REFUNDABLE)),  # type: ignore[attr-defined]
        )
    ).all()
    every = all(p.refunded_amount and p.refunded_amount >= p.amount for p in payments)
    invoice = s.get(Invoice, payment.invoice_id) if payment.invoice_id else None
    if invoice is not None and invoice.status in (
        E.InvoiceStatus.PAID,
        E.InvoiceStatus.PARTIALLY_REFUNDED,
    ):  # an open invoice stays open: what is due is what the payments net
        invoice.status = (
            E.InvoiceStatus.FULLY_REFUNDED if every else E.InvoiceStatus.PARTIALLY_REFUNDED
        )
    return every


def _purchase(s, payment: Payment, every: bool) -> None:
    """The purchase follows its invoice: refunded once every payment of it is, in full."""
    purchase = s.get(Purchase, payment.purchase_id) if payment.purchase_id else None
    if purchase is None or purchase.status not in (
        E.PurchaseStatus.PAID,
        E.PurchaseStatus.PARTIAL_REFUND,
    ):
        return
    purchase.status = E.PurchaseStatus.REFUNDED if every else E.PurchaseStatus.PARTIAL_REFUND
