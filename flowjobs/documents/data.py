"""The `Document` of an invoice or a receipt, read from the billing tables."""

from __future__ import annotations

from sqlmodel import select

from flowjobs.billing import enums as E
from flowjobs.billing import fees
from flowjobs.billing.models import (Customer, DiscountRedemption, Invoice, InvoiceLineItem, Organization, Payment,
                                     PaymentMethod)
from flowjobs.documents.layout import Document, Line, Party
from flowjobs.errors import NotFound

FLOWGLAD = Party("Flowglad, Inc.", ["2261 Market Street #4677", "San Francisco, CA 94114", "United States"],
                 "billing@flowglad.com")


def address_lines(address: dict | None) -> list[str]:
    if not address:
        return []
    inner = address.get("address") if isinstance(address.get("address"), dict) else address
    city = " ".join(str(inner[k]) for k in ("postal_code", "city") if inner.get(k))
    parts = [inner.get("line1"), inner.get("line2"), city, inner.get("state"), inner.get("country")]
    return [str(p) for p in parts if p]


def invoice_document(s, invoice_id: str) -> Document:
    invoice = s.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound(f"no invoice {invoice_id!r}")
    org = s.get(Organization, invoice.organization_id)
    customer = s.get(Customer, invoice.customer_id)
    lines = [Line(li.description or "", li.quantity, li.price)
             for li in s.exec(select(InvoiceLineItem).where(InvoiceLineItem.invoice_id == invoice.id)
                              .order_by(InvoiceLineItem.created_at, InvoiceLineItem.id))]
    doc = Document("invoice", invoice.invoice_number, invoice.currency, invoice.invoice_date, FLOWGLAD, lines,
                   due=invoice.due_date, tax=invoice.tax_amount or 0)
    _seller(doc, org)
    if customer.billing_address:
        doc.bill_to = Party(customer.billing_address.get("name") or customer.name,
                            address_lines(customer.billing_address), customer.email)
    _discount(s, doc, invoice)
    return doc


def _seller(doc: Document, org: Organization) -> None:
    if org.stripe_connect_contract_type == E.StripeConnectContractType.MERCHANT_OF_RECORD:
        doc.seller, doc.seller_for = FLOWGLAD, org.name
    else:
        doc.seller = Party(org.name, address_lines(org.billing_address), org.contact_email)
    doc.logo_path = org.logo_url if org.logo_url and not org.logo_url.startswith(("http:", "https:")) else None


def _discount(s, doc: Document, invoice: Invoice) -> None:
    if not invoice.subscription_id:
        return
    redemption = s.exec(select(DiscountRedemption).where(DiscountRedemption.subscription_id == invoice.subscription_id)
                        .order_by(DiscountRedemption.created_at)).first()
    if redemption is None:
        return
    doc.discount = fees.discount_amount(doc.base, fees.Discount(redemption.discount_amount_type,
                                                                redemption.discount_amount))
    doc.discount_code = redemption.discount_code


def receipt_document(s, payment_id: str) -> Document:
    payment = s.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id!r}")
    doc = invoice_document(s, payment.invoice_id)
    doc.kind, doc.invoice_number, doc.number = "receipt", doc.number, payment.id
    doc.issued, doc.paid = payment.charge_date, payment.amount
    method = s.get(PaymentMethod, payment.payment_method_id) if payment.payment_method_id else None
    last4 = ((method.payment_method_data or {}).get("last4") if method else None)
    doc.payment_method = f"{payment.payment_method.replace('_', ' ').title()}" + (f" •••• {last4}" if last4 else "")
    if payment.refunded and payment.refunded_amount:
        doc.refunded, doc.refunded_at = payment.refunded_amount, payment.refunded_at
    return doc
