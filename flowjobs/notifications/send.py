"""Running a notification task: prepare attachments, compose inside one read transaction,
then send with no transaction open (an SMTP server is never waited on while holding the
database)."""

from __future__ import annotations

from collections.abc import Callable

from flowjobs.notifications.compose import COMPOSERS, Ctx, Skip
from flowjobs.notifications.render import bodies

RECEIPT = "send-customer-payment-succeeded-notification"


def receipt_attachments(rt, payment_id: str) -> dict[str, list[tuple[str, bytes]]]:
    """The invoice and receipt PDFs (rendered and stored first when missing), for live invoices."""
    from flowjobs.billing.models import Invoice, Payment
    from flowjobs.documents.data import check_receipt
    from flowjobs.documents.service import store_invoice_pdf, store_receipt_pdf

    b = rt.billing
    with b.unit() as s:
        payment = s.get(Payment, payment_id)
        if payment is not None:
            check_receipt(payment)  # first: a payment that took no money gets no PDF at all
        invoice = s.get(Invoice, payment.invoice_id) if payment else None
        if invoice is None or not invoice.livemode:
            return {}
        number, pdf_url, receipt_url = invoice.invoice_number, invoice.pdf_url, payment.receipt_url

    def render_invoice() -> bytes:
        return store_invoice_pdf(
            b, rt.documents, invoice.id, rt.settings.documents.pay_url_template
        ).pdf

    def render_receipt() -> bytes:
        return store_receipt_pdf(b, rt.documents, payment_id).pdf

    return {
        payment_id: [
            (f"{number}.pdf", _read(rt.documents, pdf_url, render_invoice)),
            (f"{number}-receipt.pdf", _read(rt.documents, receipt_url, render_receipt)),
        ]
    }


def _read(storage, url: str | None, render) -> bytes:
    """The stored PDF at `url`, or a fresh one when there is none yet — or when a concurrent
    render (the generate-*-pdf task) replaced it and removed this one meanwhile. A fresh one is
    sent as rendered, never read back: the same race could remove it before it is read."""
    if url:
        try:
            return storage.read(url)
        except FileNotFoundError:
            pass
    return render()


ONLY_TO = "onlyTo"  # a payload's recipients, when it resends to those a server deferred


def _address(text: str) -> str:
    """The address in `text` ("Ada <ada@x>", " ada@x ") as a server names it, lower-cased."""
    from email.utils import parseaddr

    return (parseaddr(text)[1] or text).strip().lower()


def send_notification(
    rt, task_id: str, payload, resend: Callable[[list[str]], object] | None = None
) -> dict:
    """Compose and send the task's emails. Recipients the server deferred (4xx: greylisting, a
    full mailbox) while it accepted the message for the others are handed to `resend` — the
    task triggers itself again for them alone, later (`ONLY_TO`): retrying the whole run would
    send the others the email twice, and they used to be dropped."""
    from flowjobs.adapters.mailer import build

    attachments = receipt_attachments(rt, payload.payment_id) if task_id == RECEIPT else {}
    only_to = (payload.model_extra or {}).get(ONLY_TO)
    try:
        with rt.billing.unit() as s:
            ctx = Ctx(s, rt.settings.mail, attachments)
            emails = COMPOSERS[task_id](ctx, payload)
        if only_to is not None:  # addresses as the server named them: compared as addresses
            wanted = {_address(to) for to in only_to}
            for email in emails:
                email.to = [to for to in email.to if _address(to) in wanted]
            emails = [email for email in emails if email.to]
            if not emails:
                raise Skip(f"none of {', '.join(only_to)} is a recipient any more")
    except Skip as exc:
        return {"sent": 0, "skipped": str(exc)}
    deferred: dict[str, str] = {}
    for email in emails:
        email.message.footer = (
            f"Sent by Flowglad on behalf of {ctx.org_name}."
            if ctx.org_name
            else email.message.footer
        )
        text, html = bodies(email.message)
        deferred.update(rt.mailer.send(build(email, text, html)) or {})
    later = {_address(to) for to in deferred}
    result: dict = {
        "sent": len(emails),
        "emails": [
            {
                "to": [to for to in e.to if _address(to) not in later],
                "subject": e.subject,
                "attachments": [name for name, _ in e.attachments],
            }
            for e in emails
        ],
    }
    if deferred:
        result["deferred"] = deferred
        if resend is not None:
            result["resentBy"] = getattr(resend(sorted(deferred)), "id", None)
    return result
