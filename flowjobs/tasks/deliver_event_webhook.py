"""`deliver-event-webhook {deliveryId}`: deliver one Flowglad event to one merchant endpoint
(flowjobs.outbound.deliver), and its failure hook `settle-event-webhook-delivery`.

Triggered by flowjobs.outbound.dispatch, once per (event, endpoint), keyed
`deliver-event-webhook:<event hash>:<endpoint id>`. Its attempts follow `[webhooks.outbound]
retry_schedule` (flowjobs.outbound.retry); a killed worker's attempt is retried by the rescuer
like any run, with the same `webhook-id` (at-least-once: receivers deduplicate on it).
"""

from pydantic import Field

from flowjobs.core.registry import FailedRun, task
from flowjobs.outbound.retry import POLICY
from flowjobs.tasks._billing import Payload


class DeliveryPayload(Payload):
    delivery_id: str = Field(alias="deliveryId", min_length=1)


@task(
    "deliver-event-webhook",
    payload=DeliveryPayload,
    retry=POLICY,
    queue="webhooks",
    on_failure="settle-event-webhook-delivery",
)
def deliver_event_webhook(payload: DeliveryPayload, ctx):
    """POST one event to one merchant endpoint, signed (Standard Webhooks); retried unless 2xx or 410."""
    from flowjobs.outbound.deliver import deliver
    from flowjobs.outbound.retry import configure

    settings = ctx.settings.webhooks.outbound
    configure(settings)
    result = deliver(
        ctx.billing,
        settings,
        payload.delivery_id,
        ctx.is_last_attempt,
        ctx.run_id,
        attempt=ctx.attempt - ctx.crashes,
        replay_of=lambda: (ctx.store.get_run(ctx.run_id) or {}).get("replay_of"),
    )
    ctx.log.info("%s", result)
    return result


@task("settle-event-webhook-delivery", payload=FailedRun)
def settle_event_webhook_delivery(payload: FailedRun, ctx):
    """Mark the delivery of a deliver-event-webhook run that failed for good as failed."""
    from flowjobs.errors import AbortTaskRunError
    from flowjobs.outbound.deliver import settle_failed

    delivery_id = (payload.payload or {}).get("deliveryId")
    if not delivery_id:
        raise AbortTaskRunError(
            f"run {payload.run_id} of {payload.task} names no delivery: {payload.payload}"
        )
    return settle_failed(ctx.billing, delivery_id, payload.error, payload.run_id)
