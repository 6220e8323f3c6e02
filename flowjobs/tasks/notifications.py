"""The sixteen notification tasks of spec §10, with their ids and payloads, and the
"Awaiting Payment Confirmation" email of §7.6 as a task of its own.

Each composes its emails (flowjobs.notifications.compose) and sends them through the
configured mail transport. Nothing to send (no recipient, a test-mode receipt, a customer
without email, a cancellation no longer scheduled when the cancellation-scheduled email runs)
completes the run with the reason. A receipt asked for a payment that took no
money (flowjobs.documents.data.check_receipt) fails the run at once. An SMTP server that refuses the message
for good (5xx) fails the run at once with its answer; one that cannot be reached fails the
attempt, and the run is retried (`MAIL_RETRY`: ~3 hours). Recipients a server defers while it
accepts the others are sent to by a run of their own, 5 minutes later (`send_notification`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowjobs.core.registry import task
from flowjobs.core.retry import RetryPolicy


class NotificationPayload(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class PaymentRef(NotificationPayload):
    payment_id: str = Field(alias="paymentId", min_length=1)


class PaymentFailed(PaymentRef):
    retry_date: int | None = Field(None, alias="retryDate")  # epoch ms of the next attempt


class SubscriptionRef(NotificationPayload):
    subscription_id: str = Field(alias="subscriptionId", min_length=1)


class CancellationScheduled(SubscriptionRef):
    scheduled_cancellation_date: int = Field(alias="scheduledCancellationDate")


class PaymentData(NotificationPayload):
    payment_data: dict[str, Any] = Field(alias="paymentData")


class SubscriptionObject(NotificationPayload):
    subscription: dict[str, Any]


class OrganizationRef(NotificationPayload):
    organization_id: str = Field(alias="organizationId", min_length=1)


class CustomerSubscription(NotificationPayload):
    customer_id: str = Field(alias="customerId")
    subscription_id: str = Field(alias="subscriptionId")
    organization_id: str = Field(alias="organizationId")


class Upgraded(NotificationPayload):
    customer_id: str = Field(alias="customerId")
    new_subscription_id: str = Field(alias="newSubscriptionId")
    previous_subscription_id: str = Field(alias="previousSubscriptionId")
    organization_id: str = Field(alias="organizationId")


NOTIFICATIONS: dict[str, type[BaseModel]] = {
    "send-customer-payment-succeeded-notification": PaymentRef,
    "send-customer-payment-failed-notification": PaymentFailed,
    "send-customer-subscription-created-notification": CustomerSubscription,
    "send-customer-subscription-upgraded-notification": Upgraded,
    "send-customer-subscription-adjusted-notification": NotificationPayload,
    "send-customer-subscription-canceled-notification": SubscriptionRef,
    "send-customer-subscription-cancellation-scheduled-notification": CancellationScheduled,
    "send-customer-trial-expired-notification": SubscriptionRef,
    "send-organization-payment-succeeded-notification": PaymentData,
    "send-organization-payment-failed-notification": PaymentData,
    "send-organization-subscription-created-notification": SubscriptionObject,
    "send-organization-subscription-adjusted-notification": NotificationPayload,
    "send-organization-subscription-canceled-notification": SubscriptionObject,
    "send-organization-subscription-cancellation-scheduled-notification": SubscriptionObject,
    "send-organization-payouts-enabled-notification": OrganizationRef,
    "send-organization-onboarding-completed-notification": OrganizationRef,
}


RESEND_AFTER = 300.0  # seconds before recipients a server deferred (greylisting) are tried again


def _sender(task_id: str):
    def body(payload, ctx):
        from flowjobs.adapters.mailer import MailRejected
        from flowjobs.documents.data import NoReceipt
        from flowjobs.errors import AbortTaskRunError, NotFound
        from flowjobs.notifications.send import ONLY_TO, send_notification

        def resend(recipients: list[str]):
            import hashlib

            # keyed by the recipients too: an attempt after a crash that is deferred others
            # makes a run of its own for them, not a conflict with the first one's key
            digest = hashlib.sha256("\n".join(recipients).encode()).hexdigest()[:16]
            return ctx.trigger(
                task_id,
                {**payload.model_dump(by_alias=True), ONLY_TO: recipients},
                idempotency_key=f"{ctx.run_id}:deferred:{digest}",
                delay=RESEND_AFTER,
            )

        try:
            result = send_notification(ctx.services, task_id, payload, resend)
        except (MailRejected, NotFound, NoReceipt) as exc:
            raise AbortTaskRunError(str(exc)) from None
        ctx.log.info("%s", result.get("skipped") or f"sent {result['sent']} email(s)")
        if result.get("deferred"):
            ctx.log.warning(
                "deferred by the server: %s; run %s sends to them in %d s",
                result["deferred"],
                result.get("resentBy"),
                RESEND_AFTER,
            )
        return result

    body.__doc__ = f"Send the {task_id} email(s)."
    return body


# Spec §7.6 sends "Awaiting Payment Confirmation" directly from the outcome path; here it is a
# task like the others (keyed per payment: once per payment; no SMTP wait inside the outcome's
# transaction). Not one of the sixteen of §10.
DIRECT_EMAILS: dict[str, type[BaseModel]] = {
    "send-organization-awaiting-payment-confirmation-notification": PaymentRef,
}

# An SMTP server away: 30 s doubling to an hour, 10 attempts, ~3 hours in all (3 attempts over
# ~35 s lost receipts and payment-failed emails to a mail server's restart). A refusal for good
# (5xx), a missing row or a receipt for no money ends the run at once.
MAIL_RETRY = RetryPolicy(max_attempts=10, min_wait=30, max_wait=3600)

TASKS = [  # generated tasks are listed in TASKS, where the registry looks for them
    task(task_id, payload=model, retry=MAIL_RETRY)(_sender(task_id))
    for task_id, model in {**NOTIFICATIONS, **DIRECT_EMAILS}.items()
]
