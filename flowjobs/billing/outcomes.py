"""What a PaymentIntent's outcome does to a billing run and everything around it (spec §7.6).

Called inline after the charge, and (issue #5) by the payment-intent webhook handlers.

- A billing run's `succeeded`, `failed` and `aborted` are final here: a later or replayed
  outcome for a finished run changes nothing (upstream let webhooks overwrite them).
  Webhook events additionally pass their `created` time and are skipped when not newer than
  the last one processed (`last_stripe_payment_intent_event_timestamp`).
- The payment is the row this run inserted (`payments.billing_run_id`), so a declined card
  leaves one `failed` payment, not a stale placeholder plus a second row (§13.4).
- The invoice is the payment's invoice, not "the first invoice of the period" (§13.14).
- A failure schedules the next attempt at +3, +5, +5 days (`[billing] retry_days`; four
  attempts in all) and sends one payment-failed email that carries the retry date (§13.11).
  The very first payment of a subscription failing cancels it — unless the subscription had
  a trial, whose $0 invoice upstream wrongly treated as "no payment yet" (§13.10) — and the
  customer gets the payment-failed email without a retry date (as upstream's `charge.failed`
  path sent it), besides the cancellation emails.
- A `processing` PaymentIntent (bank debits) sends "Awaiting Payment Confirmation" to every
  member of the organisation, once per payment (§7.6).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select

from flowjobs import ids
from flowjobs.billing import discounts, repo
from flowjobs.billing import enums as E
from flowjobs.billing.models import (
    BillingPeriod,
    BillingRun,
    Customer,
    Invoice,
    Payment,
    Subscription,
)
from flowjobs.billing.periods import period_status_by_clock
from flowjobs.billing.runs import RunReport, current_payment
from flowjobs.billing.types import ms_from_utc, utc_from_ms
from flowjobs.core.clock import iso_datetime

RUN_STATUS = {
    "succeeded": E.BillingRunStatus.SUCCEEDED,
    "requires_payment_method": E.BillingRunStatus.FAILED,
    "canceled": E.BillingRunStatus.ABORTED,
    "processing": E.BillingRunStatus.AWAITING_PAYMENT_CONFIRMATION,
    "requires_action": E.BillingRunStatus.IN_PROGRESS,
    "requires_capture": E.BillingRunStatus.IN_PROGRESS,
    "requires_confirmation": E.BillingRunStatus.IN_PROGRESS,
}
ACTION = {
    E.BillingRunStatus.SUCCEEDED: "charged",
    E.BillingRunStatus.FAILED: "declined",
    E.BillingRunStatus.ABORTED: "canceled",
}


def payment_status(result) -> str:
    """The PaymentIntent's status decides; the charge's only when there is none. (An authorised,
    uncaptured charge says `succeeded` while its PaymentIntent `requires_capture`.)"""
    if result.status == "succeeded":
        return E.PaymentStatus.SUCCEEDED
    if result.status == "requires_payment_method":
        return E.PaymentStatus.FAILED
    if result.status == "canceled":
        return E.PaymentStatus.CANCELED
    if result.status == "requires_action":
        return E.PaymentStatus.REQUIRES_ACTION
    if not result.status and result.charge_status == "succeeded":
        return E.PaymentStatus.SUCCEEDED
    if not result.status and result.charge_status == "failed":
        return E.PaymentStatus.FAILED
    return E.PaymentStatus.PROCESSING


def apply_charge_result(
    b, billing_run_id: str, result, event_created: int | None = None
) -> RunReport:
    """Record `result` (a ChargeResult) for the run; `event_created` (epoch s) for webhooks."""
    with b.unit() as s:
        # the row locked (PostgreSQL): two events of one run handled at once are applied one
        # after the other, so the older cannot roll back what the newer wrote
        run = s.exec(
            select(BillingRun).where(BillingRun.id == billing_run_id).with_for_update()
        ).first()
        if run is None:
            return RunReport(billing_run_id, "skipped", "missing", "no such billing run")
        final = RUN_STATUS.get(result.status) in E.RUN_FINAL
        skip = _stale(run, event_created, final)
        payment = current_payment(s, run.id)
        current = payment.stripe_payment_intent_id if payment is not None else None
        # An event names a PaymentIntent the run's current payment recorded before confirming
        # it; one for a payment with none yet belongs to an earlier attempt (its intent was
        # canceled when the run was put back), whose late `canceled` must not end this one.
        from_event = event_created is not None
        if (
            skip is None
            and result.payment_intent_id
            and result.payment_intent_id != current
            and (current or from_event)
        ):
            skip = (
                f"PaymentIntent {result.payment_intent_id} is not the run's current one "
                f"({current or 'none recorded yet'})"
            )
        if skip:
            return RunReport(run.id, "skipped", run.status, skip)
        return _apply(b, s, run, result, event_created)


def _stale(run: BillingRun, event_created: int | None, final: bool = False) -> str | None:
    """Why the event must not be applied, or None. Stripe's `created` is in whole seconds: an
    event of the same second as the last one applied is applied only when it settles the run
    (a `succeeded` right after `requires_action` was dropped, and the run waited hours)."""
    if run.status in E.RUN_FINAL:
        return f"billing run is already {run.status}"
    if (
        run.status == E.BillingRunStatus.SCHEDULED
    ):  # e.g. the cancellation of a PaymentIntent it gave up
        return "billing run is scheduled, not charging: the PaymentIntent belongs to an earlier attempt"
    last = run.last_stripe_payment_intent_event_timestamp
    if event_created is not None and last is not None:
        last_ms, event_ms = ms_from_utc(last), event_created * 1000
        if last_ms > event_ms or (last_ms == event_ms and not final):
            return "an event at least as new was already processed"
    return None


def _apply(b, s, run: BillingRun, result, event_created: int | None) -> RunReport:
    now = s.info["now"]
    status = RUN_STATUS.get(result.status, E.BillingRunStatus.IN_PROGRESS)
    run.status = status
    if status in E.RUN_FINAL:  # settled, whichever way (a failed run had none: §13.15)
        run.completed_at = run.completed_at or now
    run.outcome_unknown_since = None  # Stripe has answered
    run.stripe_payment_intent_id = result.payment_intent_id or run.stripe_payment_intent_id
    if event_created is not None:
        run.last_stripe_payment_intent_event_timestamp = utc_from_ms(event_created * 1000)
    payment = current_payment(s, run.id)
    invoice = (
        s.get(Invoice, payment.invoice_id)
        if payment
        else repo.first_invoice(s, run.billing_period_id)
    )
    if payment is not None:
        sync_payment(payment, result)
    if invoice is not None and result.payment_intent_id:
        invoice.stripe_payment_intent_id = result.payment_intent_id
    period = s.get(BillingPeriod, run.billing_period_id)
    sub = s.get(Subscription, run.subscription_id)
    extra = {
        "paymentId": payment.id if payment else None,
        "invoiceId": invoice.id if invoice else None,
    }
    if status == E.BillingRunStatus.SUCCEEDED:
        _succeeded(b, s, run, period, sub, invoice, payment, now)
        if (
            run.is_adjustment
        ):  # a plan change's proration is paid: its items replace the old ones now
            from flowjobs.billing.adjust import apply_paid

            apply_paid(b, s, run, sub)
    elif run.is_adjustment and status in (E.BillingRunStatus.FAILED, E.BillingRunStatus.ABORTED):
        from flowjobs.billing.adjust import proration_not_paid  # the old plan stays; no ladder

        extra.update(proration_not_paid(b, s, run, sub, invoice, payment))
    elif status == E.BillingRunStatus.FAILED:
        extra.update(_failed(b, s, run, period, sub, invoice, payment, now))
    elif status == E.BillingRunStatus.ABORTED:
        _safe_sub(sub, E.SubscriptionStatus.PAST_DUE)
    elif status == E.BillingRunStatus.AWAITING_PAYMENT_CONFIRMATION and invoice is not None:
        repo.set_invoice_status(invoice, E.InvoiceStatus.AWAITING_PAYMENT_CONFIRMATION)
        if (
            payment is not None
        ):  # "Awaiting Payment Confirmation" to all members, once per payment (key)
            b.trigger(
                s,
                "send-organization-awaiting-payment-confirmation-notification",
                {"paymentId": payment.id},
                key=f"send-organization-awaiting-payment-confirmation-notification-{payment.id}",
            )
    emit_payment_event(s, payment)
    detail = (
        result.failure_message or f"PaymentIntent {result.payment_intent_id} is {result.status}"
    )
    return RunReport(run.id, ACTION.get(status, "pending"), run.status, detail, extra)


def emit_payment_event(s, payment: Payment | None) -> None:
    """payment.succeeded / payment.failed (spec §8.3), once per payment (the event hash)."""
    from flowjobs.outbound.emit import emit_event

    if payment is None:
        return
    events: dict[str, E.FlowgladEventType] = {
        E.PaymentStatus.SUCCEEDED: E.FlowgladEventType.PAYMENT_SUCCEEDED,
        E.PaymentStatus.FAILED: E.FlowgladEventType.PAYMENT_FAILED,
        E.PaymentStatus.CANCELED: E.FlowgladEventType.PAYMENT_FAILED,
    }
    kind = events.get(payment.status)
    if kind is not None:
        emit_event(
            s,
            kind,
            E.EventNoun.PAYMENT,
            payment.id,
            organization_id=payment.organization_id,
            livemode=payment.livemode,
            customer=s.get(Customer, payment.customer_id),
        )


def sync_payment(payment: Payment, result) -> None:
    payment.stripe_payment_intent_id = result.payment_intent_id or payment.stripe_payment_intent_id
    payment.stripe_charge_id = payment.stripe_charge_id or result.charge_id
    if (
        repo.set_payment_status(payment, payment_status(result))
        and payment.status == E.PaymentStatus.FAILED
    ):
        payment.failure_code = result.failure_code
        payment.failure_message = result.failure_message


def _safe_sub(sub: Subscription, status: str) -> bool:
    if sub.status in E.SUBSCRIPTION_TERMINAL:
        return False
    return repo.set_subscription_status(sub, status)


def _settle(s, run, period, invoice, now) -> bool:
    """Invoice paid and period status by clock once net settled covers what is due."""
    if invoice is None:
        return False
    due = (invoice.subtotal or 0) + (invoice.tax_amount or 0)
    if repo.net_settled(s, period.id) >= due:
        repo.set_invoice_status(invoice, E.InvoiceStatus.PAID)
        repo.set_period_status(
            period, period_status_by_clock(period.start_date, period.end_date, now)
        )
        run.completed_at = now
        return True
    _mark_past_due_if_ended(period, invoice, now)
    return False


def _mark_past_due_if_ended(period, invoice, now) -> None:
    if period.end_date <= now and period.status != E.BillingPeriodStatus.PAST_DUE:
        if invoice is not None:
            repo.set_invoice_status(invoice, E.InvoiceStatus.OPEN)
        repo.set_period_status(period, E.BillingPeriodStatus.PAST_DUE)


def _succeeded(b, s, run, period, sub, invoice, payment, now) -> None:
    _settle(s, run, period, invoice, now)
    discounts.redeem(s, run)
    if sub.status in (
        E.SubscriptionStatus.PAST_DUE,
        E.SubscriptionStatus.INCOMPLETE,
        E.SubscriptionStatus.TRIALING,
        E.SubscriptionStatus.UNPAID,
    ):
        repo.set_subscription_status(sub, E.SubscriptionStatus.ACTIVE)
    if invoice is not None:
        b.trigger(
            s,
            "generate-invoice-pdf",
            {"invoiceId": invoice.id},
            key=f"generate-invoice-pdf-{invoice.id}-paid",
        )
    if payment is not None:
        b.trigger(
            s,
            "send-customer-payment-succeeded-notification",
            {"paymentId": payment.id},
            key=payment.id,
        )
        b.trigger(
            s,
            "send-organization-payment-succeeded-notification",
            {"paymentData": _payment_data(s, payment, invoice)},
            key=f"send-organization-payment-succeeded-notification-{payment.id}",
        )


def _failed(b, s, run, period, sub, invoice, payment, now) -> dict:
    from flowjobs.billing.cancel import cancel_immediately

    _mark_past_due_if_ended(period, invoice, now)
    standing = repo.charge_standing(s, sub, period, now)
    if standing is repo.ChargeStanding.OWED_AFTER_END:
        # the last period, served and billed at its end: still owed, whichever of the two
        # jobs ran first, so retried as usual
        return _retry(b, s, run, sub, invoice, payment, now, mark_past_due=False)
    if standing is repo.ChargeStanding.ENDED:
        return {"next": "subscription already ended"}
    if _first_payment(s, sub):
        if (
            payment is not None
        ):  # the customer hears why (no retry date), besides the cancellation emails
            b.trigger(
                s,
                "send-customer-payment-failed-notification",
                {"paymentId": payment.id, "retryDate": None},
                key=f"send-customer-payment-failed-notification-{payment.id}",
            )
        cancel_immediately(b, s, sub, reason=E.CancellationReason.NON_PAYMENT)
        return {"next": "first payment failed: subscription canceled"}
    # a cancellation scheduled for later stays so (and can still be withdrawn)
    return _retry(b, s, run, sub, invoice, payment, now, sub.cancel_scheduled_at is None)


def _retry(b, s, run, sub, invoice, payment, now, mark_past_due: bool = True) -> dict:
    retry = schedule_retry(b, s, run, sub, now)
    if mark_past_due:  # not a subscription whose cancellation is already scheduled or done
        _safe_sub(sub, E.SubscriptionStatus.PAST_DUE)
    if payment is not None:
        retry_ms = ms_from_utc(retry.scheduled_for) if retry else None
        notify_payment_failed(b, s, payment, invoice, retry_ms)
    if retry is None:
        return {"next": f"no more retries after attempt {run.attempt_number}"}
    return {
        "next": f"retry {retry.id} on {iso_datetime(retry.scheduled_for)}",
        "retryBillingRunId": retry.id,
    }


def _first_payment(s, sub: Subscription) -> bool:
    """No succeeded non-zero payment yet, not a free plan, and no trial period behind it."""
    if sub.is_free_plan or sub.trial_end is not None:
        return False
    paid = s.exec(
        select(Payment.id).where(
            Payment.subscription_id == sub.id,
            Payment.amount > 0,
            # refunded since: still paid once (a goodwill refund of month 1 made a decline of
            # month 2 cancel the subscription as a failed first payment)
            col(Payment.status).in_(list(E.PAYMENT_SETTLED)),
        )
    ).first()
    trial = s.exec(
        select(BillingPeriod.id).where(
            BillingPeriod.subscription_id == sub.id, BillingPeriod.trial_period == True
        )
    ).first()
    return paid is None and trial is None


def schedule_retry(b, s, run: BillingRun, sub: Subscription, now: datetime) -> BillingRun | None:
    delay = b.retry_delay(run.attempt_number)
    period = s.get(BillingPeriod, run.billing_period_id)
    ended = repo.charge_standing(s, sub, period, now) is repo.ChargeStanding.ENDED
    if delay is None or sub.do_not_charge or ended:
        return None
    retry = BillingRun(
        id=ids.new_id("billing_run"),
        livemode=run.livemode,
        billing_period_id=run.billing_period_id,
        scheduled_for=now + delay,
        status=E.BillingRunStatus.SCHEDULED,
        stripe_payment_intent_id=run.stripe_payment_intent_id,
        attempt_number=run.attempt_number + 1,
        subscription_id=run.subscription_id,
        payment_method_id=run.payment_method_id,
        last_stripe_payment_intent_event_timestamp=run.last_stripe_payment_intent_event_timestamp,
    )
    s.add(retry)
    s.flush()
    b.queue_billing_run(s, retry.id, retry.scheduled_for)
    return retry


def notify_payment_failed(
    b, s, payment: Payment, invoice: Invoice | None, retry_ms: int | None = None
) -> None:
    """The customer's and the organisation's payment-failed emails, each once per payment;
    `retry_ms`: when the next attempt is due (None: no retry)."""
    b.trigger(
        s,
        "send-customer-payment-failed-notification",
        {"paymentId": payment.id, "retryDate": retry_ms},
        key=f"send-customer-payment-failed-notification-{payment.id}",
    )
    data = _payment_data(s, payment, invoice)
    data["failureReason"] = payment.failure_message or payment.failure_code
    b.trigger(
        s,
        "send-organization-payment-failed-notification",
        {"paymentData": data},
        key=f"send-organization-payment-failed-notification-{payment.id}",
    )


def _payment_data(s, payment: Payment, invoice: Invoice | None) -> dict:
    return {
        "organizationId": payment.organization_id,
        "customerId": payment.customer_id,
        "paymentId": payment.id,
        "amount": payment.amount,
        "currency": payment.currency,
        "invoiceNumber": invoice.invoice_number if invoice else None,
        "livemode": payment.livemode,
    }
