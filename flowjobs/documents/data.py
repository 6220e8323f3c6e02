"""The `Document` of an invoice or a receipt, read from the billing tables.

Its money is the invoice's (flowjobs.billing.totals.invoice_totals): the lines with their
billing period, the discount the billing run applied, the tax, what was paid and what is
still due — the numbers the run charged with.

A receipt is made only for a payment that took the money: `succeeded`, or `refunded` (spec §3
counts both as settled, and §11's receipt says when it was refunded). Any other payment —
declined, canceled, still processing — is refused with `NoReceipt` (exit 2), whoever asks: the
`documents render` command, the `generate-payment-receipt-pdf` task, the receipt email.
"""

from __future__ import annotations

from sqlmodel import col, select

from flowjobs.billing import enums as E
from flowjobs.billing.models import Customer, Invoice, Organization, Payment, PaymentMethod
from flowjobs.billing.totals import invoice_totals
from flowjobs.documents.document import Document, Line, Party
from flowjobs.errors import BadInput, NotFound

FLOWGLAD = Party(
    "Flowglad, Inc.",
    ["2261 Market Street #4677", "San Francisco, CA 94114", "United States"],
    "billing@flowglad.com",
)
CLOSED = {
    E.InvoiceStatus.PAID,
    E.InvoiceStatus.VOID,
    E.InvoiceStatus.UNCOLLECTIBLE,
    *E.INVOICE_REFUNDED,
}
RECEIPTED = E.PAYMENT_SETTLED  # the payments a receipt is made for


class NoReceipt(BadInput):
    """A receipt asked of a payment that took no money (exit 2); the message names its status."""


def check_receipt(payment: Payment) -> None:
    """Raise `NoReceipt` unless `payment` is one a receipt is made for (`RECEIPTED`)."""
    if payment.status in RECEIPTED:
        return
    why = f" ({payment.failure_code})" if payment.failure_code else ""
    raise NoReceipt(
        f"payment {payment.id} is {payment.status}{why}: a receipt is only made for a "
        "succeeded (or refunded) payment"
    )


def address_lines(address: dict | None) -> list[str]:
    if not address:
        return []
    nested = address.get("address")
    inner: dict = nested if isinstance(nested, dict) else address
    city = " ".join(str(inner[k]) for k in ("postal_code", "city") if inner.get(k))
    parts = [inner.get("line1"), inner.get("line2"), city, inner.get("state"), inner.get("country")]
    return [str(p) for p in parts if p]


def pay_url(template: str | None, invoice: Invoice) -> str | None:
    """`[documents] pay_url_template` filled in for this invoice ({invoice_id}, {organization_id},
    {invoice_number}); None without a template."""
    if not template:
        return None
    return template.format(
        invoice_id=invoice.id,
        organization_id=invoice.organization_id,
        invoice_number=invoice.invoice_number,
    )


def invoice_document(s, invoice_id: str, pay_url_template: str | None = None) -> Document:
    invoice = s.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound(f"no invoice {invoice_id!r}")
    org = s.get(Organization, invoice.organization_id)
    customer = s.get(Customer, invoice.customer_id)
    money = invoice_totals(s, invoice)
    lines = [
        Line(
            li.description,
            li.quantity,
            li.unit_price,
            (li.period_start, li.period_end) if li.period_start and li.period_end else None,
        )
        for li in money.lines
    ]
    doc = Document(
        "invoice",
        invoice.invoice_number,
        invoice.currency,
        invoice.invoice_date,
        FLOWGLAD,
        lines,
        due=invoice.due_date,
        discount=money.discount,
        discount_code=money.discount_code,
        tax=money.tax,
        amount_paid=money.paid,
        amount_refunded=money.refunded,
    )
    _seller(doc, org)
    if customer.billing_address:
        doc.bill_to = Party(
            customer.billing_address.get("name") or customer.name,
            address_lines(customer.billing_address),
            customer.email,
        )
    else:  # no billing address: the customer's name and email still say who is billed
        doc.bill_to = Party(customer.name, [], customer.email)
    if invoice.status == E.InvoiceStatus.PAID or invoice.status in E.INVOICE_REFUNDED:
        doc.paid_on = _paid_on(s, invoice)  # refunded after: it said "$25.00 due"
    doc.refunds_owed = invoice.status not in E.INVOICE_REFUNDED
    if invoice.status not in CLOSED and money.due > 0:
        doc.pay_url = pay_url(pay_url_template, invoice)
    return doc


def _paid_on(s, invoice: Invoice):
    """When a paid invoice was paid: its last settled payment's date (a $0 invoice: its date)."""
    payment = s.exec(
        select(Payment)
        .where(Payment.invoice_id == invoice.id, col(Payment.status).in_(list(E.PAYMENT_SETTLED)))
        .order_by(col(Payment.charge_date).desc(), col(Payment.id))
    ).first()
    if payment is None:
        return invoice.invoice_date
    return payment.settlement_date or payment.charge_date


def _seller(doc: Document, org: Organization) -> None:
    if org.stripe_connect_contract_type == E.StripeConnectContractType.MERCHANT_OF_RECORD:
        doc.seller, doc.seller_for = FLOWGLAD, org.name
    else:
        doc.seller = Party(org.name, address_lines(org.billing_address), org.contact_email)
    doc.logo_path = (
        org.logo_url if org.logo_url and not org.logo_url.startswith(("http:", "https:")) else None
    )


def method_summary(payment_type: str, method: PaymentMethod | None) -> str:
    """ "Visa •••• 4242" from the stored card details; the payment type when they are unknown."""
    data = (method.payment_method_data or {}) if method else {}
    brand = data.get("brand")
    name = (
        str(brand).replace("_", " ").title()
        if brand and brand != "unknown"
        else payment_type.replace("_", " ").title()
    )
    return name + (f" •••• {data['last4']}" if data.get("last4") else "")


def receipt_document(s, payment_id: str) -> Document:
    payment = s.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id!r}")
    check_receipt(payment)
    doc = invoice_document(s, payment.invoice_id)
    doc.kind, doc.invoice_number, doc.number = "receipt", doc.number, payment.id
    doc.issued, doc.paid, doc.paid_on, doc.pay_url = payment.charge_date, payment.amount, None, None
    method = s.get(PaymentMethod, payment.payment_method_id) if payment.payment_method_id else None
    doc.payment_method = method_summary(payment.payment_method, method)
    if payment.refunded_amount:  # in full or in part
        doc.refunded, doc.refunded_at = payment.refunded_amount, payment.refunded_at
    return doc
