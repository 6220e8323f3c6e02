"""One delivery run per (event, matching endpoint) — the job of upstream's `event-inserted`.

`schedule_deliveries` finds the enabled endpoints of the event's organisation and livemode
whose filter takes its type, inserts a delivery record for each (unique on event + endpoint)
and triggers `deliver-event-webhook {deliveryId}` with the idempotency key
`deliver-event-webhook:<event hash>:<endpoint id>` in the same transaction, then sets the
event's `processed_at`: "every delivery is scheduled", not "delivered" (the deliveries carry
their own outcome). However often it runs for one event, each endpoint gets one delivery.
"""

from __future__ import annotations

from sqlmodel import col, select

from flowjobs import ids
from flowjobs.billing.models import Event
from flowjobs.config import OutboundWebhookSettings
from flowjobs.errors import BadInput, NotFound
from flowjobs.outbound.models import WebhookDelivery, WebhookEndpoint

TASK = "deliver-event-webhook"


def message_id(event: Event) -> str:
    """The `webhook-id`: derived from the event's hash, so the same for every endpoint and attempt."""
    return "msg_" + event.hash[:32]


def delivery_key(event: Event, endpoint_id: str) -> str:
    return f"{TASK}:{event.hash}:{endpoint_id}"


def matching_endpoints(s, event: Event) -> list[WebhookEndpoint]:
    rows = s.exec(
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.organization_id == event.organization_id,
            WebhookEndpoint.livemode == event.livemode,
            WebhookEndpoint.enabled == True,
        )
        .order_by(col(WebhookEndpoint.created_at), col(WebhookEndpoint.id))
    )
    return [e for e in rows if e.wants(event.type)]


def schedule_deliveries(
    b, s, event: Event, settings: OutboundWebhookSettings | None = None
) -> dict:
    settings = settings or OutboundWebhookSettings()
    if not settings.enabled:
        return {"result": "outbound webhooks are disabled", "eventId": event.id, "scheduled": 0}
    from flowjobs.outbound.retry import configure

    configure(settings)  # the runs' max_attempts follow the retry schedule
    scheduled, existing = [], 0
    for endpoint in matching_endpoints(s, event):
        found = s.exec(
            select(WebhookDelivery).where(
                WebhookDelivery.event_id == event.id, WebhookDelivery.endpoint_id == endpoint.id
            )
        ).first()
        if found is not None:
            existing += 1
            continue
        delivery = _new_delivery(event, endpoint)
        s.add(delivery)
        s.flush()
        run = b.trigger(s, TASK, {"deliveryId": delivery.id}, key=delivery_key(event, endpoint.id))
        delivery.run_id = run.id
        scheduled.append(delivery.id)
    if event.processed_at is None:
        event.processed_at = s.info["now"]
    return {
        "result": "scheduled",
        "eventId": event.id,
        "scheduled": len(scheduled),
        "alreadyScheduled": existing,
        "deliveryIds": scheduled,
    }


def _new_delivery(event: Event, endpoint: WebhookEndpoint) -> WebhookDelivery:
    return WebhookDelivery(
        id=ids.new_id("whdel"),
        event_id=event.id,
        event_hash=event.hash,
        event_type=event.type,
        endpoint_id=endpoint.id,
        organization_id=event.organization_id,
        livemode=event.livemode,
        message_id=message_id(event),
        status="pending",
    )


def redeliver(
    b, settings: OutboundWebhookSettings, event_id: str, endpoint_id: str | None = None
) -> list[dict]:
    """Deliver an event again: to `endpoint_id`, or to every endpoint it was or would be
    delivered to. A new run per delivery (its record is reset to `pending`, attempts kept);
    the same `webhook-id`, so a receiver that already has it can tell."""
    from flowjobs.outbound.retry import configure

    configure(settings)
    with b.unit() as s:
        event = s.get(Event, event_id)
        if event is None:
            raise NotFound(f"event {event_id} does not exist")
        deliveries = {
            d.endpoint_id: d
            for d in s.exec(select(WebhookDelivery).where(WebhookDelivery.event_id == event.id))
        }
        if endpoint_id is not None:
            endpoint = s.get(WebhookEndpoint, endpoint_id)
            if endpoint is None:
                raise NotFound(f"endpoint {endpoint_id} does not exist")
            if (
                endpoint.organization_id != event.organization_id
                or endpoint.livemode != event.livemode
            ):
                raise BadInput(
                    f"endpoint {endpoint_id} does not belong to the event's organisation and mode"
                )
            if not endpoint.enabled:
                raise BadInput(f"endpoint {endpoint_id} is disabled")
            targets = [endpoint]
        else:
            targets = [e for e in matching_endpoints(s, event)]
            targets += [
                s.get(WebhookEndpoint, k) for k in deliveries if k not in {t.id for t in targets}
            ]
            targets = [t for t in targets if t is not None and t.enabled]
        if not targets:
            raise BadInput(f"event {event_id} has no enabled endpoint to deliver to")
        done = []
        for endpoint in targets:
            delivery = deliveries.get(endpoint.id)
            if delivery is None:
                delivery = _new_delivery(event, endpoint)
                s.add(delivery)
            delivery.status = "pending"
            delivery.next_attempt_at = None
            s.flush()
            run = b.trigger(s, TASK, {"deliveryId": delivery.id})  # no key: a deliberate new run
            delivery.run_id = run.id
            done.append({"deliveryId": delivery.id, "endpointId": endpoint.id, "runId": run.id})
        if event.processed_at is None:
            event.processed_at = s.info["now"]
        return done
