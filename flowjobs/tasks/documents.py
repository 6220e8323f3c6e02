"""`generate-invoice-pdf {invoiceId}` and `generate-payment-receipt-pdf {paymentId}` (the seed's
ids): render with reportlab (flowjobs.documents) and store through the document storage."""

from pydantic import BaseModel, ConfigDict, Field

from flowjobs.core.registry import task


class InvoiceRef(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    invoice_id: str = Field(alias="invoiceId", min_length=1)


class PaymentRef(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    payment_id: str = Field(alias="paymentId", min_length=1)


def _run(fn, *args):
    """`fn(*args)`; an unknown object, or a payment that gets no receipt (not succeeded or
    refunded), fails the run at once with the message: another attempt would not change it."""
    from flowjobs.documents.data import NoReceipt
    from flowjobs.errors import AbortTaskRunError, NotFound

    try:
        return fn(*args)
    except (NotFound, NoReceipt) as exc:
        raise AbortTaskRunError(str(exc)) from None


@task("generate-invoice-pdf", payload=InvoiceRef)
def generate_invoice_pdf(payload: InvoiceRef, ctx):
    """Render an invoice PDF and set the invoice's pdf_url."""
    from flowjobs.documents.service import store_invoice_pdf

    url = _run(
        store_invoice_pdf,
        ctx.billing,
        ctx.documents,
        payload.invoice_id,
        ctx.settings.documents.pay_url_template,
    ).url
    ctx.log.info("invoice %s: %s", payload.invoice_id, url)
    return {"invoiceId": payload.invoice_id, "pdfUrl": url}


@task("generate-payment-receipt-pdf", payload=PaymentRef)
def generate_payment_receipt_pdf(payload: PaymentRef, ctx):
    """Render a payment's receipt PDF; set receipt_pdf_url and the payment's receipt_url."""
    from flowjobs.documents.service import store_receipt_pdf

    url = _run(store_receipt_pdf, ctx.billing, ctx.documents, payload.payment_id).url
    ctx.log.info("receipt for %s: %s", payload.payment_id, url)
    return {"paymentId": payload.payment_id, "receiptUrl": url}
