"""Rendering and storing invoice and receipt PDFs; setting `pdf_url`, `receipt_pdf_url` and
the payment's `receipt_url`. Every render stores a new object under a new key, so rendering
again is safe; the invoice's previous PDF is then removed (best effort), as upstream."""

from __future__ import annotations

from typing import NamedTuple

from flowjobs import ids
from flowjobs.billing.models import Invoice, Payment
from flowjobs.documents.data import invoice_document, receipt_document
from flowjobs.documents.layout import render


def invoice_pdf(b, invoice_id: str, pay_url_template: str | None = None) -> bytes:
    with b.unit() as s:
        return render(invoice_document(s, invoice_id, pay_url_template))


def receipt_pdf(b, payment_id: str) -> bytes:
    with b.unit() as s:
        return render(receipt_document(s, payment_id))


class Stored(NamedTuple):
    """A PDF just stored: its URL and its bytes. A concurrent render may replace the file (and
    remove this one) at any moment, so whoever needs the content keeps these bytes rather than
    reading the URL back."""

    url: str
    pdf: bytes


def store_invoice_pdf(b, storage, invoice_id: str, pay_url_template: str | None = None) -> Stored:
    pdf = invoice_pdf(b, invoice_id, pay_url_template)
    with b.unit() as s:
        org_id = s.get(Invoice, invoice_id).organization_id
    url = storage.put(f"invoices/{org_id}/{invoice_id}/{ids.new_id('pdf')}.pdf", pdf)
    with b.unit() as s:
        invoice = s.get(Invoice, invoice_id)
        previous, invoice.pdf_url = invoice.pdf_url, url
    if previous and previous != url:
        storage.delete_url(previous)
    return Stored(url, pdf)


def store_receipt_pdf(b, storage, payment_id: str) -> Stored:
    pdf = receipt_pdf(b, payment_id)
    with b.unit() as s:
        org_id = s.get(Payment, payment_id).organization_id
    url = storage.put(f"receipts/{org_id}/{payment_id}/receipt_{ids.new_id('pdf')}.pdf", pdf)
    with b.unit() as s:
        payment = s.get(Payment, payment_id)
        payment.receipt_url = url
        s.get(Invoice, payment.invoice_id).receipt_pdf_url = url
    return Stored(url, pdf)
