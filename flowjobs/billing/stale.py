"""`fail-stale-payments` (spec §6.6), asking Stripe before failing anything (§13.5).

A payment still pending after `[billing] stale_payment_after` (6 h) is looked up at Stripe:
- its PaymentIntent settled (succeeded, declined, canceled) → that outcome is applied through
  the billing-run outcome path, so payment, invoice, billing run and subscription agree;
- still `processing` at Stripe (ACH debits take days) → left alone;
- a billing-run payment whose charge never got an answer (the worker died mid-call) → the
  identical charge request is sent again under the run's idempotency key: Stripe answers with
  the first result if it had it, or charges now — once either way;
- no PaymentIntent and no billing run → failed with `payment_timeout`, as upstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import select

from flowjobs.billing import enums as E
from flowjobs.billing import repo
from flowjobs.billing.models import BillingRun, Payment

TIMEOUT_MESSAGE = "Payment timed out after 6 hours in pending state"


@dataclass
class StaleReport:
    total: int = 0
    failed: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    still_processing: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"totalStalePayments": self.total, "successfullyFailed": len(self.failed),
                "failedPaymentIds": self.failed, "settledPaymentIds": self.settled,
                "stillProcessingPaymentIds": self.still_processing, "errors": self.errors}


def stale_payment_pages(b, threshold: datetime, page: int):
    """Ids of pending payments not updated since `threshold`, a page at a time (keyset)."""
    after = ""
    while True:
        with b.unit() as s:
            ids_ = list(s.exec(select(Payment.id).where(Payment.status.in_(list(E.PAYMENT_PENDING)),
                                                         Payment.updated_at <= threshold, Payment.id > after)
                               .order_by(Payment.id).limit(page)))
        if not ids_:
            return
        yield ids_
        after = ids_[-1]


def fail_stale_payments(b, now: datetime) -> StaleReport:
    from datetime import timedelta

    report = StaleReport()
    threshold = now - timedelta(seconds=b.settings.stale_payment_after)
    for page in stale_payment_pages(b, threshold, b.settings.fan_out_page):
        for payment_id in page:
            report.total += 1
            try:
                _one(b, payment_id, report)
            except Exception as exc:  # per payment: one bad row must not stop the rest
                report.errors.append({"paymentId": payment_id, "error": f"{type(exc).__name__}: {exc}"})
    return report


def _one(b, payment_id: str, report: StaleReport) -> None:
    from flowjobs.billing.outcomes import apply_charge_result
    from flowjobs.billing.runs import charge_request

    with b.unit() as s:
        payment = s.get(Payment, payment_id)
        run = s.get(BillingRun, payment.billing_run_id) if payment.billing_run_id else None
        charge = charge_request(s, run, payment) if run is not None and not payment.stripe_payment_intent_id else None
        intent_id, livemode = payment.stripe_payment_intent_id, payment.livemode
    if run is None and intent_id is None:
        _fail(b, payment_id)
        report.failed.append(payment_id)
        return
    if charge is not None:  # never answered: replay the identical request (same idempotency key)
        result = b.gateway.charge_off_session(
            livemode=charge.livemode, amount=charge.amount, currency=charge.currency,
            customer=charge.customer, payment_method=charge.payment_method, metadata=charge.metadata,
            idempotency_key=charge.idempotency_key, application_fee_amount=charge.application_fee_amount,
            transfer_destination=charge.transfer_destination, on_behalf_of=charge.on_behalf_of)
    else:
        result = b.gateway.retrieve_payment_intent(livemode, intent_id)
    if result.status in ("processing", "requires_action", "requires_confirmation", "requires_capture"):
        report.still_processing.append(payment_id)
        return
    if run is not None:
        apply_charge_result(b, run.id, result)
    else:
        _sync(b, payment_id, result)
    (report.settled if result.status == "succeeded" else report.failed).append(payment_id)


def _fail(b, payment_id: str) -> None:
    with b.unit() as s:
        payment = s.get(Payment, payment_id)
        if repo.set_payment_status(payment, E.PaymentStatus.FAILED):
            payment.failure_message = TIMEOUT_MESSAGE
            payment.failure_code = "payment_timeout"


def _sync(b, payment_id: str, result) -> None:
    from flowjobs.billing.outcomes import sync_payment

    with b.unit() as s:
        sync_payment(s.get(Payment, payment_id), result)
