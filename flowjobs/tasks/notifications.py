"""The sixteen notification tasks of spec §10: ids and payloads (the contract billing uses).

Rendering and sending email is issue #6 and not built yet: until then each task records
in its run log that nothing was sent, and returns `{"sent": false, ...}` — visible in
`flowjobs runs show`, never reported as a delivered email.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowjobs.core.registry import task


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


def _not_sent(task_id: str):
    def body(payload, ctx):
        ctx.log.warning("email not sent: notification delivery is not built yet (issue #6)")
        return {"sent": False, "reason": "notification delivery is not built yet", "task": task_id}

    body.__doc__ = f"Declared notification {task_id} (delivery pending, issue #6)."
    return body


for _task_id, _model in NOTIFICATIONS.items():
    task(_task_id, payload=_model, description="notification (delivery pending: issue #6)")(_not_sent(_task_id))
