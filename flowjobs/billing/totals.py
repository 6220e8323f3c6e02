"""An invoice's money, computed in one place (DESIGN §8): lines, discount, subtotal, tax,
total, amount paid and amount due.

    base      = Σ unit price × quantity of the lines
    discount  = a fixed amount, or a percentage (≤ 100) of base rounded half-up; 0 ≤ discount ≤ base
    subtotal  = base − discount
    tax       = the invoice's tax (0 when the subtotal is 0)
    total     = subtotal + tax
    paid      = Σ amount of the invoice's succeeded and refunded payments; refunded = Σ their refunds
    due       = max(total − (paid − refunded), 0)     (net settled, spec §7.4/§7.5)

`compute` is the pure function; `invoice_totals` reads one invoice's inputs from the
database. The billing run charges `due` (flowjobs.billing.runs), the invoice and receipt PDFs,
the notification emails and `flowjobs billing show` print these numbers, and the fee
calculation (flowjobs.billing.fees) starts from `compute` too — so what is shown is what is
charged.

Which discount an invoice carries: once a billing run has billed the invoice, its stored
`subtotal` (the pre-tax total the run charged) fixes the discount as base − subtotal, so a
redemption that becomes fully redeemed later does not change an issued invoice. An invoice no
run has billed yet (`subtotal` null) takes the subscription's first redemption that is not
fully redeemed (spec §7.5), as the next billing run would. A purchase's invoice (one-time
checkout, flowjobs.billing.purchases) reads its purchase's redemptions the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from flowjobs.billing.money import format_money, percent_of
from flowjobs.core.clock import iso_datetime


@dataclass(frozen=True)
class Discount:
    amount_type: str  # DiscountAmountType: "percent" | "fixed"
    amount: int  # minor units (fixed) or whole percent (percent)


def base_amount(items) -> int:
    """Σ unit_price × quantity over `(unit_price, quantity)` pairs."""
    return sum(unit_price * quantity for unit_price, quantity in items)


def discount_amount(base: int, discount: Discount | None) -> int:
    """The discount on `base`: never negative, never more than base; percent capped at 100, half-up."""
    if discount is None or base <= 0:
        return 0
    if discount.amount_type == "percent":
        return min(percent_of(base, min(max(discount.amount, 0), 100)), base)
    return min(max(discount.amount, 0), base)


@dataclass(frozen=True)
class MoneyLine:
    description: str
    quantity: int
    unit_price: int
    period_start: datetime | None = None
    period_end: datetime | None = None

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class Totals:
    currency: str
    lines: tuple[MoneyLine, ...]
    base: int
    discount: int
    discount_code: str | None
    subtotal: int
    tax: int
    total: int
    paid: int
    refunded: int
    due: int

    def refunds_not_owed(self) -> Totals:
        """These totals for an invoice the merchant refunded (billing/refunds.py): a refund is
        money given back, not a debt; what is due is what the payments (gross) did not pay."""
        return replace(self, due=max(self.total - self.paid, 0))

    def as_dict(self) -> dict:
        """Minor units (exact, for scripts) next to the formatted amounts (for people)."""
        money = lambda v: format_money(v, self.currency)  # noqa: E731
        out: dict[str, Any] = {
            "currency": self.currency,
            "lines": [
                {
                    "description": li.description,
                    "quantity": li.quantity,
                    "unitPrice": li.unit_price,
                    "amount": li.amount,
                    "periodStart": iso_datetime(li.period_start),
                    "periodEnd": iso_datetime(li.period_end),
                }
                for li in self.lines
            ],
        }
        for key in ("base", "discount", "subtotal", "tax", "total", "paid", "refunded", "due"):
            out[key] = getattr(self, key)
        out["discountCode"] = self.discount_code
        out["formatted"] = {
            key: money(getattr(self, key))
            for key in ("base", "discount", "subtotal", "tax", "total", "paid", "refunded", "due")
        }
        return out


def compute(
    currency: str,
    lines,
    *,
    discount: int | Discount | None = None,
    discount_code: str | None = None,
    tax: int = 0,
    paid: int = 0,
    refunded: int = 0,
) -> Totals:
    """The money of an invoice from its lines (`MoneyLine`s or `(unit_price, quantity)` pairs).

    `discount` is a rule (`Discount`) applied to the base, or an amount already decided (an
    issued invoice's), clamped to [0, base]."""
    lines = tuple(
        line if isinstance(line, MoneyLine) else MoneyLine("", line[1], line[0]) for line in lines
    )
    base = sum(line.amount for line in lines)
    if isinstance(discount, Discount):
        off = discount_amount(base, discount)
    else:
        off = min(max(int(discount or 0), 0), max(base, 0))
    subtotal = max(base - off, 0)
    tax = max(int(tax or 0), 0) if subtotal > 0 else 0
    total = subtotal + tax
    return Totals(
        currency,
        lines,
        base,
        off,
        discount_code if off else None,
        subtotal,
        tax,
        total,
        paid,
        refunded,
        max(total - (paid - refunded), 0),
    )


# -- from the database ------------------------------------------------------------------------
def invoice_totals(s, invoice) -> Totals:
    """The money of one invoice (an `Invoice` or its id), read inside the caller's session."""
    from sqlalchemy import func
    from sqlmodel import col, select

    from flowjobs.billing import enums as E
    from flowjobs.billing.models import DiscountRedemption, Invoice, InvoiceLineItem, Payment
    from flowjobs.errors import NotFound

    if isinstance(invoice, str):
        found = s.get(Invoice, invoice)
        if found is None:
            raise NotFound(f"no invoice {invoice!r}")
        invoice = found
    start, end = invoice.billing_period_start_date, invoice.billing_period_end_date
    lines = [
        MoneyLine(li.description or "", li.quantity, li.price, start, end)
        for li in s.exec(
            select(InvoiceLineItem)
            .where(InvoiceLineItem.invoice_id == invoice.id)
            .order_by(col(InvoiceLineItem.created_at), col(InvoiceLineItem.id))
        )
    ]
    redemptions = []
    owner = (
        DiscountRedemption.subscription_id == invoice.subscription_id
        if invoice.subscription_id
        else DiscountRedemption.purchase_id == invoice.purchase_id
        if invoice.purchase_id
        else None
    )  # a subscription's invoice: its subscription's redemptions; a purchase's: its purchase's
    if owner is not None:
        redemptions = list(
            s.exec(
                select(DiscountRedemption)
                .where(owner)
                .order_by(col(DiscountRedemption.created_at), col(DiscountRedemption.id))
            )
        )
    base = sum(line.amount for line in lines)
    if invoice.subtotal is not None:  # billed: the discount the run applied
        discount = min(max(base - invoice.subtotal, 0), base)
        code = _code_of(base, discount, redemptions)
    else:  # not billed yet: the discount the next billing run would apply
        active = next((r for r in redemptions if not r.fully_redeemed), None)
        discount = Discount(active.discount_amount_type, active.discount_amount) if active else None
        code = active.discount_code if active else None
    paid, refunded = s.exec(
        select(
            func.coalesce(func.sum(Payment.amount), 0),
            func.coalesce(func.sum(func.coalesce(Payment.refunded_amount, 0)), 0),
        ).where(Payment.invoice_id == invoice.id, col(Payment.status).in_(list(E.PAYMENT_SETTLED)))
    ).one()
    totals = compute(
        invoice.currency,
        lines,
        discount=discount,
        discount_code=code,
        tax=invoice.tax_amount or 0,
        paid=int(paid),
        refunded=int(refunded),
    )
    if invoice.status in E.INVOICE_REFUNDED:
        # the merchant gave the money back (billing/refunds.py): not owed again. (Spec §7.5's
        # net of refunds holds for an invoice still being paid: what a run charges.)
        totals = totals.refunds_not_owed()
    return totals


def _code_of(base: int, discount: int, redemptions) -> str | None:
    """The code of the redemption that yields `discount` on `base` (active ones first)."""
    if discount <= 0:
        return None
    for redemption in sorted(redemptions, key=lambda r: bool(r.fully_redeemed)):
        rule = Discount(redemption.discount_amount_type, redemption.discount_amount)
        if discount_amount(base, rule) == discount:
            return redemption.discount_code
    return None
