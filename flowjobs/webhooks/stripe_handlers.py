"""What each Stripe event does (spec §8.2), given the stored event.

Every handler reads the event through its model in flowjobs.webhooks.shapes (validated again
here: a stored event is read back from its bytes), never the raw dict. PaymentIntent events
for billing runs (metadata `billingRunId`) go through the same outcome code as the inline
charge (flowjobs.billing.outcomes) with the event's `created` time, so an older event never
overwrites newer state and a finished run is never reopened. PaymentIntent events of checkout
sessions (metadata `type: checkout_session`, `checkoutSessionId`) and `charge.failed` for their
charges record one-time purchases (flowjobs.billing.purchases). `charge.failed` leaves a billing
run's payment alone: upstream marked it failed and sent the "no automatic retry" email, racing
the run's own outcome, which schedules the retry and sends the email with its date (sharing its
key, that email was then dropped), and a payment no longer `processing` made the run's next
attempt skip it.
"""

from __future__ import annotations

from sqlmodel import select

from flowjobs.adapters.stripe_gateway import ChargeResult
from flowjobs.billing import enums as E
from flowjobs.billing import purchases, repo
from flowjobs.billing.models import BillingRun, CheckoutSession, Organization, Payment
from flowjobs.billing.types import utc_from_ms
from flowjobs.core.clock import iso_datetime
from flowjobs.errors import NotFound
from flowjobs.webhooks import shapes


def _id(value) -> str | None:
    """An expandable field: an id, an expanded object (shapes.Ref or a summary), or None."""
    return value if value is None or isinstance(value, str) else value.id


def _read(event: dict, model: type) -> shapes.StripeEvent:
    checked = shapes.stripe_event(event)
    if not isinstance(checked.obj, model):  # routing picks the handler by type: cannot happen
        raise shapes.BadShape(f"a {checked.type} event is not handled as a {model.__name__}")
    return checked


def intent_result(pi: shapes.PaymentIntent) -> ChargeResult:
    charge = pi.latest_charge if isinstance(pi.latest_charge, shapes.ChargeSummary) else None
    error = pi.last_payment_error or shapes.PaymentError()
    return ChargeResult(
        pi.status,
        pi.id,
        _id(pi.latest_charge),
        charge.status if charge else None,
        pi.amount,
        (pi.currency or "").upper(),
        pi.created,
        error.code or (charge.failure_code if charge else None),
        error.message or (charge.failure_message if charge else None),
    )


def payment_intent(b, event: dict) -> dict:
    from flowjobs.billing.outcomes import apply_charge_result

    checked = _read(event, shapes.PaymentIntent)
    pi: shapes.PaymentIntent = checked.obj
    run_id = pi.metadata.get("billingRunId")
    if run_id:
        return apply_charge_result(
            b, run_id, intent_result(pi), event_created=checked.created
        ).as_dict()
    session_id = purchases.session_of(pi.metadata)
    if session_id:  # a checkout session's PaymentIntent: a one-time purchase (spec §8.2, §8.3)
        return purchases.record_checkout_charge(
            b,
            session_id,
            intent_id=pi.id,
            intent_status=pi.status,
            charge_id=_id(pi.latest_charge),
            livemode=checked.envelope.livemode,
        )
    return _other_intent(b, checked.type, pi)


def _other_intent(b, kind: str, pi: shapes.PaymentIntent) -> dict:
    """PaymentIntents that are not billing runs (checkout): keep a known payment in step."""
    from flowjobs.billing.outcomes import emit_payment_event

    target = {
        "payment_intent.processing": E.PaymentStatus.PROCESSING,
        "payment_intent.succeeded": E.PaymentStatus.SUCCEEDED,
        "payment_intent.requires_action": E.PaymentStatus.REQUIRES_ACTION,
    }.get(kind)
    with b.unit() as s:
        payment = s.exec(select(Payment).where(Payment.stripe_payment_intent_id == pi.id)).first()
        if payment is None or target is None:
            return {"result": "ignored", "detail": f"no billing run and no payment for {pi.id}"}
        changed = repo.set_payment_status(payment, target)
        emit_payment_event(s, payment)  # payment.succeeded (spec §8.3)
        return {
            "result": "updated" if changed else "unchanged",
            "paymentId": payment.id,
            "status": payment.status,
        }


def charge_failed(b, event: dict) -> dict:
    from flowjobs.billing.outcomes import emit_payment_event

    checked = _read(event, shapes.Charge)
    charge: shapes.Charge = checked.obj
    with b.unit() as s:
        payment = _payment_of(s, charge)
        checkout = charge.payment_intent and (payment is None or payment.purchase_id)
    if checkout:  # perhaps a checkout session's charge: recorded as the PaymentIntent events are
        done = _checkout_charge_failed(b, charge, checked.envelope.livemode)
        if done is not None:
            return done
    with b.unit() as s:
        payment = _payment_of(s, charge)
        if payment is None:
            return {"result": "ignored", "detail": f"no payment for charge {charge.id}"}
        if payment.billing_run_id:  # its run's outcome (retry date, emails) settles it
            return {
                "result": "ignored",
                "paymentId": payment.id,
                "detail": f"payment {payment.id} of billing run {payment.billing_run_id} is "
                "settled by its PaymentIntent's outcome, not by charge.failed",
            }
        if not repo.set_payment_status(payment, E.PaymentStatus.FAILED):
            return {"result": "unchanged", "paymentId": payment.id, "status": payment.status}
        payment.failure_code = charge.failure_code
        payment.failure_message = charge.failure_message
        payment.stripe_charge_id = payment.stripe_charge_id or charge.id
        emit_payment_event(s, payment)  # payment.failed (spec §8.3)
        # the billing path uses the same key: one email per failed payment, whichever comes first
        b.trigger(
            s,
            "send-customer-payment-failed-notification",
            {"paymentId": payment.id, "retryDate": None},
            key=f"send-customer-payment-failed-notification-{payment.id}",
        )
        return {"result": "failed", "paymentId": payment.id}


def _payment_of(s, charge: shapes.Charge) -> Payment | None:
    """The payment of a charge: by `stripe_charge_id`, else by its PaymentIntent."""
    payment = s.exec(select(Payment).where(Payment.stripe_charge_id == charge.id)).first()
    if payment is None and charge.payment_intent:
        payment = s.exec(
            select(Payment).where(Payment.stripe_payment_intent_id == _id(charge.payment_intent))
        ).first()
    return payment


def _checkout_charge_failed(b, charge: shapes.Charge, livemode: bool | None) -> dict | None:
    """A failed charge names only its PaymentIntent: its metadata (read from Stripe) says
    whether a checkout session pays with it. None when it does not."""
    from flowjobs.adapters.stripe_gateway import StripeRequestError

    intent_id = _id(charge.payment_intent)
    if intent_id is None:  # no PaymentIntent: no checkout session's charge
        return None
    try:
        intent = b.gateway.retrieve_intent_object(bool(livemode), intent_id)
    except StripeRequestError:  # Stripe knows no such PaymentIntent: nothing of ours
        return None
    session_id = purchases.session_of(intent.get("metadata") or {})
    if not session_id:
        return None
    return purchases.record_checkout_charge(
        b,
        session_id,
        intent_id=intent_id,
        intent_status=intent.get("status") or "",
        charge_id=charge.id,
        livemode=livemode,
    )


def onboarding_status(account: shapes.Account) -> str:
    requirements = account.requirements or shapes.Requirements()
    due = (requirements.currently_due or []) + (requirements.past_due or [])
    tos = (
        account.tos_acceptance.date if account.tos_acceptance else None
    ) or account.details_submitted
    if not tos or due:
        return E.BusinessOnboardingStatus.PARTIALLY_ONBOARDED
    if (account.capabilities or {}).get("transfers") != "active":
        return E.BusinessOnboardingStatus.UNAUTHORIZED
    return E.BusinessOnboardingStatus.FULLY_ONBOARDED


def account_updated(b, event: dict) -> dict:
    checked = _read(event, shapes.Account)
    account: shapes.Account = checked.obj
    account_id = checked.envelope.account or account.id
    with b.unit() as s:
        org = s.exec(
            select(Organization).where(Organization.stripe_account_id == account_id)
        ).first()
        if org is None:
            raise NotFound(f"no organization with Stripe account {account_id}")
        created = utc_from_ms(checked.created * 1000)
        last = org.stripe_account_event_at
        if last is not None and created < last:
            # Stripe delivers out of order: an older snapshot must not undo a newer one's state
            # (same second: applied, there is no telling them apart)
            return {
                "result": "ignored",
                "detail": f"an account.updated of {iso_datetime(last)} was applied already; "
                f"this one is of {iso_datetime(created)}",
                "organizationId": org.id,
                "onboardingStatus": org.onboarding_status,
            }
        org.stripe_account_event_at = created
        before, after = org.onboarding_status, onboarding_status(account)
        org.onboarding_status = after  # payouts_enabled stays a manual decision
        if (
            after == E.BusinessOnboardingStatus.FULLY_ONBOARDED
            and before != after
            and not org.payouts_enabled
        ):
            b.trigger(
                s,
                "send-organization-onboarding-completed-notification",
                {"organizationId": org.id},
                key=f"send-organization-onboarding-completed-notification-{org.id}",
            )
        return {"organizationId": org.id, "onboardingStatus": after, "previous": before}


def charge_refunded(b, event: dict) -> dict:
    """A refund made at Stripe (flowjobs.billing.refunds): the charge's total refunded so far."""
    from flowjobs.billing.refunds import lock_invoice, record_refund

    checked = _read(event, shapes.Charge)
    charge: shapes.Charge = checked.obj
    if charge.amount is None or charge.amount_refunded is None:
        raise shapes.BadShape("a charge.refunded event without amount and amount_refunded")
    with b.unit() as s:
        payment = _payment_of(s, charge)
        if payment is None:
            return {"result": "ignored", "detail": f"no payment for charge {charge.id}"}
        # the invoice's row, then the payment's (PostgreSQL): the order a receipt's render
        # writes them in, so that the two never wait for each other
        invoice = lock_invoice(s, payment)
        s.refresh(payment, with_for_update=True)
        if payment.livemode != checked.envelope.livemode:
            return {
                "result": "ignored",
                "detail": f"a {'live' if checked.envelope.livemode else 'test'}-mode event for "
                f"payment {payment.id} of the other mode",
            }
        done = record_refund(
            s,
            payment,
            charge.amount_refunded,
            charge.amount,
            charge.currency,
            utc_from_ms(checked.created * 1000),
        )
        payment.stripe_charge_id = payment.stripe_charge_id or charge.id
        if done.result in ("refunded", "partially refunded"):
            # the stored PDFs say it too (they said "Paid", with no refund, for good)
            refunded = payment.refunded_amount
            if invoice is not None:
                b.trigger(
                    s,
                    "generate-invoice-pdf",
                    {"invoiceId": invoice.id},
                    key=f"generate-invoice-pdf-{invoice.id}-refund-{payment.id}-{refunded}",
                )
            b.trigger(
                s,
                "generate-payment-receipt-pdf",
                {"paymentId": payment.id},
                key=f"generate-payment-receipt-pdf-{payment.id}-refund-{refunded}",
            )
        return done.as_dict(payment)


def setup_intent_succeeded(b, event: dict) -> dict:
    from flowjobs.webhooks.checkout import setup_intent_succeeded as run

    return run(b, _read(event, shapes.SetupIntent).obj)


HANDLERS = {
    "stripe-payment-intent-succeeded": payment_intent,
    "stripe-payment-intent-payment-failed": payment_intent,
    "stripe-payment-intent-canceled": payment_intent,
    "stripe-payment-intent-processing": payment_intent,
    "stripe-payment-intent-requires-action": payment_intent,
    "stripe-charge-failed": charge_failed,
    "setup-intent-succeeded": setup_intent_succeeded,
    "stripe-account-updated": account_updated,
    "stripe-charge-refunded": charge_refunded,
}


def missing_reference(b, event: dict) -> str | None:
    """Why a replayed event cannot apply here (an object it names does not exist), or None."""
    checked = shapes.stripe_event(event)
    with b.unit() as s:
        if isinstance(checked.obj, shapes.PaymentIntent):
            run_id = checked.obj.metadata.get("billingRunId")
            if run_id and s.get(BillingRun, run_id) is None:
                return f"billing run {run_id} (metadata of {checked.obj.id}) does not exist"
            session_id = purchases.session_of(checked.obj.metadata)
            if not run_id and session_id and s.get(CheckoutSession, session_id) is None:
                return (
                    f"checkout session {session_id} (metadata of {checked.obj.id}) does not exist"
                )
        if isinstance(checked.obj, shapes.Account):
            account_id = checked.envelope.account or checked.obj.id
            if (
                s.exec(
                    select(Organization.id).where(Organization.stripe_account_id == account_id)
                ).first()
                is None
            ):
                return f"no organization has Stripe account {account_id}"
    return None
