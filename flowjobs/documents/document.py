"""What an invoice or receipt says, whatever draws it: the `Document` (lines, parties, totals
from flowjobs.billing.totals.compute — the function the billing run charges with) and the
rows both renderers print (details, headline, pay link, totals). `layout.py` (flowing, any
length) and `fast.py` (one page, drawn directly) only draw them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flowjobs.billing.money import format_money
from flowjobs.billing.totals import Totals, compute


@dataclass
class Line:
    description: str
    quantity: int
    unit_price: int
    period: tuple[datetime, datetime] | None = None  # the billing period the line is for

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price

    @property
    def period_text(self) -> str | None:
        return f"{day(self.period[0])} – {day(self.period[1])}" if self.period else None


@dataclass
class Party:
    name: str
    address: list[str] = field(default_factory=list)
    email: str | None = None


@dataclass
class Document:
    kind: str  # invoice | receipt
    number: str  # invoice number, or the payment id on a receipt
    currency: str
    issued: datetime
    seller: Party
    lines: list[Line]
    bill_to: Party | None = None
    due: datetime | None = None  # None: due upon receipt
    discount: int = 0
    discount_code: str | None = None
    tax: int = 0
    logo_path: str | None = None
    seller_for: str | None = None  # MoR: "For: <org>"
    invoice_number: str | None = None  # on receipts
    paid: int = 0  # receipts: this payment's amount
    payment_method: str | None = None
    refunded: int = 0  # receipts: this payment's refund
    refunded_at: datetime | None = None
    pay_url: str | None = None  # invoices with an amount due: the "Pay online" link
    amount_paid: int = 0  # Σ settled payments on the invoice (receipts: at least this payment)
    amount_refunded: int = 0  # Σ refunds of those payments
    paid_on: datetime | None = None  # set on a paid invoice: "Paid <date>"
    refunds_owed: bool = True  # False: the merchant refunded it (a refund is not owed again)

    @property
    def totals(self) -> Totals:
        paid = max(self.amount_paid, self.paid) if self.kind == "receipt" else self.amount_paid
        refunded = (
            max(self.amount_refunded, self.refunded)
            if self.kind == "receipt"
            else self.amount_refunded
        )
        totals = compute(
            self.currency,
            [(line.unit_price, line.quantity) for line in self.lines],
            discount=self.discount,
            discount_code=self.discount_code,
            tax=self.tax,
            paid=paid,
            refunded=refunded,
        )
        if not self.refunds_owed:  # as `invoice_totals` says of a refunded invoice
            totals = totals.refunds_not_owed()
        return totals

    @property
    def base(self) -> int:
        return self.totals.base

    @property
    def subtotal(self) -> int:
        return self.totals.subtotal

    @property
    def total(self) -> int:
        return self.totals.total

    @property
    def amount_due(self) -> int:
        return self.totals.due


MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def day(moment: datetime) -> str:
    """`March 5, 2027`, in English whatever the process's locale: `%B` follows LC_TIME, which
    an application that embeds flowjobs may have set (`locale.setlocale(LC_ALL, "")`)."""
    return f"{MONTHS[moment.month - 1]} {moment.day}, {moment.year}"


def detail_rows(doc: Document) -> list[tuple[str, str]]:
    """The details block, shared by both layouts (empty values left out)."""
    if doc.kind == "invoice":
        when = (
            ("Date paid", day(doc.paid_on))
            if doc.paid_on
            else ("Date due", day(doc.due) if doc.due else "Due upon receipt")
        )
        rows = [("Invoice number", doc.number), ("Date of issue", day(doc.issued)), when]
    else:
        rows = [
            ("Receipt number", doc.number),
            ("Invoice number", doc.invoice_number or ""),
            ("Date paid", day(doc.issued)),
            ("Payment method", doc.payment_method or ""),
        ]
    return [(k, v) for k, v in rows if v]


def headline(doc: Document) -> str:
    if doc.kind == "invoice":
        if doc.paid_on:
            return f"Paid {day(doc.paid_on)}"
        return f"{format_money(doc.amount_due, doc.currency)} due {day(doc.due or doc.issued)}"
    return f"{format_money(doc.paid, doc.currency)} paid on {day(doc.issued)}"


def pay_link(doc: Document) -> str | None:
    """ "Pay online: <url>" on an invoice that still has an amount due and a payment URL."""
    if doc.kind == "invoice" and doc.pay_url and not doc.paid_on and doc.amount_due > 0:
        return f"Pay online: {doc.pay_url}"
    return None


EMPHASISED = ("Total", "Amount due", "Amount paid")


def total_rows(doc: Document) -> list[tuple[str, str]]:
    """The totals block, shared by both layouts: (label, formatted amount)."""
    money = lambda v: format_money(v, doc.currency)  # noqa: E731
    totals = doc.totals
    rows = []
    if totals.discount:
        rows.append(("Amount", money(totals.base)))
        code = totals.discount_code
        rows.append((f"Discount ({code})" if code else "Discount", money(-totals.discount)))
    rows.append(("Subtotal", money(totals.subtotal)))
    if totals.tax:
        rows.append(("Tax", money(totals.tax)))
    rows.append(("Total", money(totals.total)))
    if doc.kind == "invoice":
        if totals.paid:
            rows.append(("Amount paid", money(totals.paid)))
        if totals.refunded:
            rows.append(("Refunded", money(-totals.refunded)))
        rows.append(("Amount due", money(totals.due)))
    else:
        rows.append(("Amount paid", money(doc.paid)))
        if doc.refunded and doc.refunded_at:
            rows.append((f"Refunded on {day(doc.refunded_at)}", money(-doc.refunded)))
            rows.append(("Total refunded without credit note", money(doc.refunded)))
        if totals.due and not totals.refunded:  # a partial payment: what the invoice still asks for
            rows.append(("Amount due", money(totals.due)))
    return rows
