"""`generate-invoice-pdf {invoiceId}` and `generate-payment-receipt-pdf {paymentId}`:
declared with their payloads (billing triggers them); rendering is issue #6 and not built
yet — until then each run logs that no PDF was made and returns `{"rendered": false}`."""

from pydantic import BaseModel, ConfigDict, Field

from flowjobs.core.registry import task


class InvoiceRef(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    invoice_id: str = Field(alias="invoiceId", min_length=1)


class PaymentRef(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    payment_id: str = Field(alias="paymentId", min_length=1)


@task("generate-invoice-pdf", payload=InvoiceRef, description="invoice PDF (rendering pending: issue #6)")
def generate_invoice_pdf(payload: InvoiceRef, ctx):
    ctx.log.warning("no PDF made for %s: rendering is not built yet (issue #6)", payload.invoice_id)
    return {"rendered": False, "invoiceId": payload.invoice_id}


@task("generate-payment-receipt-pdf", payload=PaymentRef, description="receipt PDF (rendering pending: issue #6)")
def generate_payment_receipt_pdf(payload: PaymentRef, ctx):
    ctx.log.warning("no receipt made for %s: rendering is not built yet (issue #6)", payload.payment_id)
    return {"rendered": False, "paymentId": payload.payment_id}
