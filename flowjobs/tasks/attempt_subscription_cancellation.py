"""`attempt-subscription-cancellation {subscriptionId}`: cancel a subscription whose
scheduled cancellation is due (flowjobs.billing.cancel.cancel_immediately)."""

from pydantic import Field, model_validator

from flowjobs.core.registry import task
from flowjobs.tasks._billing import Payload, lift_ref, run_billing


class SubscriptionPayload(Payload):
    subscription_id: str = Field(alias="subscriptionId", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _lift(cls, data):
        return lift_ref(data, "subscription", "subscriptionId")


def _cancel(b, subscription_id: str) -> dict:
    from flowjobs.billing import enums as E
    from flowjobs.billing import repo
    from flowjobs.billing.cancel import cancel_immediately
    from flowjobs.errors import NotFound

    with b.unit() as s:
        sub = repo.lock_subscription(s, subscription_id)  # it may open periods (the rollover's)
        if sub is None:
            raise NotFound(f"subscription {subscription_id} does not exist")
        if sub.canceled_at is not None and sub.status == E.SubscriptionStatus.CANCELED:
            return {"subscriptionId": sub.id, "result": "already ended"}
        if sub.cancel_scheduled_at is None or sub.cancel_scheduled_at > b.now():
            return {"subscriptionId": sub.id, "result": "no cancellation due"}
        cancel_immediately(
            b, s, sub, reason=sub.cancellation_reason or E.CancellationReason.CUSTOMER_REQUEST
        )
        return {"subscriptionId": sub.id, "result": "canceled"}


@task("attempt-subscription-cancellation", payload=SubscriptionPayload)
def attempt_subscription_cancellation(payload: SubscriptionPayload, ctx):
    """Cancel one subscription whose scheduled cancellation is due."""
    result = run_billing(_cancel, ctx.billing, payload.subscription_id)
    ctx.log.info("%s: %s", result["subscriptionId"], result["result"])
    return result
