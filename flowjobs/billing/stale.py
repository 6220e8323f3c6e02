"""`fail-stale-payments` (spec §6.6), asking Stripe before failing anything (§13.5), so that no
payment or billing run stays pending forever (issue #13).

A payment still pending (`processing`, `requires_action`, `requires_confirmation`) and not
updated for `[billing] stale_payment_after` (6 h) is looked up at Stripe by its recorded
PaymentIntent:
- settled there (succeeded, declined, canceled) → that outcome goes through the billing-run
  outcome path, so payment, invoice, billing run and subscription agree;
- a billing run's PaymentIntent never confirmed (`requires_confirmation`), or a billing run's
  payment with no PaymentIntent recorded (its worker died before confirming — a PaymentIntent
  is only ever confirmed after its id is recorded) → nothing was charged: settled like a
  failed job (flowjobs.billing.runs.settle_failed_job — back to `scheduled`, bounded);
- still pending at Stripe (`requires_action`, `requires_capture`, `requires_confirmation`,
  `processing`) → left alone until `[billing] pending_give_up_after` (3 d; `processing`:
  `processing_give_up_after`, 14 d) after the payment was made; then given up: the
  PaymentIntent is canceled at Stripe when it can be (not `processing`: Stripe cannot cancel
  that, and a late success would then find the payment failed — hence the long default),
  and the payment fails with `payment_timeout`; a billing run takes the failure path (its
  retry ladder, the payment-failed emails);
- a one-time purchase's payment settled at Stripe → recorded through the purchase path
  (flowjobs.billing.purchases), as its webhook would have been: invoice, purchase, receipt;
- no PaymentIntent and no billing run charging it → failed with `payment_timeout`, as upstream.
The message is the spec's, with the actual wait: "Payment timed out after 6 hours in pending state".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import col, select

from flowjobs.billing import enums as E
from flowjobs.billing import repo
from flowjobs.billing.models import BillingRun, CheckoutSession, Payment

TIMEOUT_CODE = "payment_timeout"
STILL_PENDING = ("processing", "requires_action", "requires_confirmation", "requires_capture")


def timeout_message(seconds: float) -> str:
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and (seconds / size).is_integer():
            n = int(seconds / size)
            return f"Payment timed out after {n} {unit}{'s' if n != 1 else ''} in pending state"
    return f"Payment timed out after {seconds:g} seconds in pending state"


TIMEOUT_MESSAGE = timeout_message(6 * 3600)  # the spec's


@dataclass
class StaleReport:
    total: int = 0
    failed: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    still_processing: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "totalStalePayments": self.total,
            "successfullyFailed": len(self.failed),
            "failedPaymentIds": self.failed,
            "settledPaymentIds": self.settled,
            "stillProcessingPaymentIds": self.still_processing,
            "requeuedPaymentIds": self.requeued,
            "errors": self.errors,
        }


def stale_payment_pages(b, threshold: datetime, page: int):
    """Ids of pending payments not updated since `threshold`, a page at a time (keyset)."""
    after = ""
    while True:
        with b.unit() as s:
            ids_ = list(
                s.exec(
                    select(Payment.id)
                    .where(
                        col(Payment.status).in_(list(E.PAYMENT_PENDING)),
                        Payment.updated_at <= threshold,
                        Payment.id > after,
                    )
                    .order_by(Payment.id)
                    .limit(page)
                )
            )
        if not ids_:
            return
        yield ids_
        after = ids_[-1]


def fail_stale_payments(b, now: datetime, *, alert: bool = False) -> StaleReport:
    report = StaleReport()
    threshold = now - timedelta(seconds=b.settings.stale_payment_after)
    for page in stale_payment_pages(b, threshold, b.settings.fan_out_page):
        for payment_id in page:
            report.total += 1
            try:
                _one(b, payment_id, now, report, alert)
            except Exception as exc:  # per payment: one bad row must not stop the rest
                report.errors.append(
                    {"paymentId": payment_id, "error": f"{type(exc).__name__}: {exc}"}
                )
    return report


def _one(b, payment_id: str, now: datetime, report: StaleReport, alert: bool) -> None:
    from flowjobs.adapters.stripe_gateway import ChargeResult
    from flowjobs.billing.outcomes import apply_charge_result
    from flowjobs.billing.runs import settle_failed_job

    with b.unit() as s:
        payment = s.get(Payment, payment_id)
        run = s.get(BillingRun, payment.billing_run_id) if payment.billing_run_id else None
        run_id = run.id if run is not None else None
        # the billing run charging this payment right now, if any
        charging = run_id if run and run.status == E.BillingRunStatus.IN_PROGRESS else None
        intent_id, livemode, made = (
            payment.stripe_payment_intent_id,
            payment.livemode,
            payment.created_at,
        )
        session_id = _checkout_of(s, payment) if run is None else None
    if intent_id is None:
        if charging is not None:  # never confirmed, so never charged: settle it like a failed job
            _settled_run(
                settle_failed_job(
                    b, charging, None, "payment stale without a PaymentIntent", alert=alert
                ),
                payment_id,
                report,
            )
        else:  # no Stripe trace and nothing executing it
            _fail(b, payment_id, timeout_message(b.settings.stale_payment_after))
            report.failed.append(payment_id)
        return
    result = b.gateway.retrieve_payment_intent(livemode, intent_id)
    if result.status == "requires_confirmation" and charging is not None:
        _settled_run(
            settle_failed_job(
                b, charging, None, "payment stale, its PaymentIntent never confirmed", alert=alert
            ),
            payment_id,
            report,
        )
        return
    if result.status in STILL_PENDING:
        give_up = (
            b.settings.processing_give_up_after
            if result.status == "processing"
            else b.settings.pending_give_up_after
        )
        if now - made < timedelta(seconds=give_up):
            _sync_pending(b, run_id, payment_id, result)
            report.still_processing.append(payment_id)
            return
        if result.status != "processing":
            result = b.gateway.cancel_payment_intent(
                livemode, intent_id
            )  # so it can never charge now
        if result.status in STILL_PENDING or result.status == "canceled":
            result = ChargeResult(
                "requires_payment_method",
                intent_id,
                result.charge_id,
                "failed",
                result.amount,
                result.currency,
                result.created,
                TIMEOUT_CODE,
                timeout_message(give_up),
            )
    if run_id is not None:
        apply_charge_result(b, run_id, result)
    elif session_id is not None and result.failure_code != TIMEOUT_CODE:
        # a one-time purchase settled at Stripe: recorded as its webhook would have recorded it
        # (invoice, purchase, receipt, discount), which then finds nothing left to do
        from flowjobs.billing.purchases import record_checkout_charge

        record_checkout_charge(
            b,
            session_id,
            intent_id=intent_id,
            intent_status=result.status,
            charge_id=result.charge_id,
            livemode=livemode,
        )
    else:
        _sync(b, payment_id, result)
    (report.settled if result.status == "succeeded" else report.failed).append(payment_id)


def _checkout_of(s, payment: Payment) -> str | None:
    """The checkout session a purchase's payment pays, if any."""
    if not payment.purchase_id:
        return None
    return s.exec(
        select(CheckoutSession.id)
        .where(CheckoutSession.purchase_id == payment.purchase_id)
        .order_by(col(CheckoutSession.created_at), col(CheckoutSession.id))
    ).first()


def _settled_run(outcome, payment_id: str, report: StaleReport) -> None:
    if outcome.action == "requeued" or (
        outcome.action == "failed" and outcome.extra.get("requeues")
    ):
        report.requeued.append(payment_id)
    elif outcome.action == "charged":
        report.settled.append(payment_id)
    elif outcome.action == "declined":
        report.failed.append(payment_id)
    else:
        report.still_processing.append(payment_id)


def _sync_pending(b, run_id: str | None, payment_id: str, result) -> None:
    """Keep a still-pending payment's status in step with Stripe's (e.g. `requires_action`)."""
    from flowjobs.billing.outcomes import apply_charge_result

    if run_id is not None:
        apply_charge_result(b, run_id, result)
    else:
        _sync(b, payment_id, result)


def _fail(b, payment_id: str, message: str) -> None:
    with b.unit() as s:
        payment = s.get(Payment, payment_id)
        if repo.set_payment_status(payment, E.PaymentStatus.FAILED):
            payment.failure_message = message
            payment.failure_code = TIMEOUT_CODE


def _sync(b, payment_id: str, result) -> None:
    from flowjobs.billing.outcomes import sync_payment

    with b.unit() as s:
        sync_payment(s.get(Payment, payment_id), result)
