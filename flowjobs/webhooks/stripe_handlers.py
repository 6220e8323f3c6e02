"""What each Stripe event does (spec §8.2), given the stored event.

PaymentIntent events for billing runs (metadata `billingRunId`) go through the same outcome
code as the inline charge (flowjobs.billing.outcomes) with the event's `created` time, so an
older event never overwrites newer state and a finished run is never reopened.
"""

from __future__ import annotations

from sqlmodel import select

from flowjobs.adapters.stripe_gateway import ChargeResult
from flowjobs.billing import enums as E
from flowjobs.billing import repo
from flowjobs.billing.models import BillingRun, Organization, Payment
from flowjobs.errors import NotFound


def _id(value):
    return value.get("id") if isinstance(value, dict) else value


def intent_result(pi: dict) -> ChargeResult:
    charge = pi.get("latest_charge")
    error = pi.get("last_payment_error") or {}
    charge_status = charge.get("status") if isinstance(charge, dict) else None
    return ChargeResult(pi.get("status") or "", pi.get("id"), _id(charge), charge_status, int(pi.get("amount") or 0),
                        str(pi.get("currency") or "").upper(), pi.get("created"),
                        error.get("code") or (charge.get("failure_code") if isinstance(charge, dict) else None),
                        error.get("message") or (charge.get("failure_message") if isinstance(charge, dict) else None))


def payment_intent(b, event: dict) -> dict:
    from flowjobs.billing.outcomes import apply_charge_result

    pi = event["data"]["object"]
    run_id = (pi.get("metadata") or {}).get("billingRunId")
    if run_id:
        return apply_charge_result(b, run_id, intent_result(pi), event_created=event["created"]).as_dict()
    return _other_intent(b, event["type"], pi)


def _other_intent(b, kind: str, pi: dict) -> dict:
    """PaymentIntents that are not billing runs (checkout): keep a known payment in step."""
    target = {"payment_intent.processing": E.PaymentStatus.PROCESSING,
              "payment_intent.succeeded": E.PaymentStatus.SUCCEEDED,
              "payment_intent.requires_action": E.PaymentStatus.REQUIRES_ACTION}.get(kind)
    with b.unit() as s:
        payment = s.exec(select(Payment).where(Payment.stripe_payment_intent_id == pi.get("id"))).first()
        if payment is None or target is None:
            return {"result": "ignored", "detail": f"no billing run and no payment for {pi.get('id')}"}
        changed = repo.set_payment_status(payment, target)
        return {"result": "updated" if changed else "unchanged", "paymentId": payment.id, "status": payment.status}


def charge_failed(b, event: dict) -> dict:
    charge = event["data"]["object"]
    with b.unit() as s:
        payment = s.exec(select(Payment).where(Payment.stripe_charge_id == charge.get("id"))).first()
        if payment is None and charge.get("payment_intent"):
            payment = s.exec(select(Payment).where(
                Payment.stripe_payment_intent_id == _id(charge.get("payment_intent")))).first()
        if payment is None:
            return {"result": "ignored", "detail": f"no payment for charge {charge.get('id')}"}
        if not repo.set_payment_status(payment, E.PaymentStatus.FAILED):
            return {"result": "unchanged", "paymentId": payment.id, "status": payment.status}
        payment.failure_code = charge.get("failure_code")
        payment.failure_message = charge.get("failure_message")
        payment.stripe_charge_id = payment.stripe_charge_id or charge.get("id")
        # the billing path uses the same key: one email per failed payment, whichever comes first
        b.trigger(s, "send-customer-payment-failed-notification", {"paymentId": payment.id, "retryDate": None},
                  key=f"send-customer-payment-failed-notification-{payment.id}")
        return {"result": "failed", "paymentId": payment.id}


def onboarding_status(account: dict) -> str:
    requirements = account.get("requirements") or {}
    due = (requirements.get("currently_due") or []) + (requirements.get("past_due") or [])
    tos = (account.get("tos_acceptance") or {}).get("date") or account.get("details_submitted")
    if not tos or due:
        return E.BusinessOnboardingStatus.PARTIALLY_ONBOARDED
    if (account.get("capabilities") or {}).get("transfers") != "active":
        return E.BusinessOnboardingStatus.UNAUTHORIZED
    return E.BusinessOnboardingStatus.FULLY_ONBOARDED


def account_updated(b, event: dict) -> dict:
    account = event["data"]["object"]
    account_id = event.get("account") or account.get("id")
    with b.unit() as s:
        org = s.exec(select(Organization).where(Organization.stripe_account_id == account_id)).first()
        if org is None:
            raise NotFound(f"no organization with Stripe account {account_id}")
        before, after = org.onboarding_status, onboarding_status(account)
        org.onboarding_status = after  # payouts_enabled stays a manual decision
        if after == E.BusinessOnboardingStatus.FULLY_ONBOARDED and before != after and not org.payouts_enabled:
            b.trigger(s, "send-organization-onboarding-completed-notification", {"organizationId": org.id},
                      key=f"send-organization-onboarding-completed-notification-{org.id}")
        return {"organizationId": org.id, "onboardingStatus": after, "previous": before}


def setup_intent_succeeded(b, event: dict) -> dict:
    from flowjobs.webhooks.checkout import setup_intent_succeeded as run

    return run(b, event["data"]["object"])


HANDLERS = {
    "stripe-payment-intent-succeeded": payment_intent,
    "stripe-payment-intent-payment-failed": payment_intent,
    "stripe-payment-intent-canceled": payment_intent,
    "stripe-payment-intent-processing": payment_intent,
    "stripe-payment-intent-requires-action": payment_intent,
    "stripe-charge-failed": charge_failed,
    "setup-intent-succeeded": setup_intent_succeeded,
    "stripe-account-updated": account_updated,
}


def missing_reference(b, event: dict) -> str | None:
    """Why a replayed event cannot apply here (an object it names does not exist), or None."""
    obj = event["data"]["object"]
    with b.unit() as s:
        if event["type"].startswith("payment_intent."):
            run_id = (obj.get("metadata") or {}).get("billingRunId")
            if run_id and s.get(BillingRun, run_id) is None:
                return f"billing run {run_id} (metadata of {obj.get('id')}) does not exist"
        if event["type"] == "account.updated":
            account_id = event.get("account") or obj.get("id")
            if s.exec(select(Organization.id).where(Organization.stripe_account_id == account_id)).first() is None:
                return f"no organization has Stripe account {account_id}"
    return None
