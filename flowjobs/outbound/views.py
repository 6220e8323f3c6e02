"""Read models of the delivery records for the CLI (and the dashboard)."""

from __future__ import annotations

from sqlmodel import col, select

from flowjobs.core.clock import iso_datetime as _iso
from flowjobs.errors import BadInput
from flowjobs.outbound.models import DELIVERY_STATUSES, WebhookDelivery
from flowjobs.store.states import RunStatus


def as_dict(d: WebhookDelivery) -> dict:
    return {
        "id": d.id,
        "eventId": d.event_id,
        "eventType": d.event_type,
        "endpointId": d.endpoint_id,
        "organizationId": d.organization_id,
        "livemode": d.livemode,
        "messageId": d.message_id,
        "status": d.status,
        "attempts": d.attempts,
        "lastStatusCode": d.last_status_code,
        "lastLatencyMs": d.last_latency_ms,
        "lastError": d.last_error,
        "responseExcerpt": d.response_excerpt,
        "runId": d.run_id,
        "createdAt": _iso(d.created_at),
        "lastAttemptAt": _iso(d.last_attempt_at),
        "nextAttemptAt": _iso(d.next_attempt_at),
        "deliveredAt": _iso(d.delivered_at),
    }


def delivery_rows(
    b,
    endpoint_id: str | None = None,
    status: str | None = None,
    event_id: str | None = None,
    limit: int = 50,
) -> list[dict]:
    if status is not None and status not in DELIVERY_STATUSES:
        raise BadInput(f"--status must be one of {', '.join(DELIVERY_STATUSES)}")
    query = select(WebhookDelivery)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    fetch = limit
    if status is not None:  # as shown: an open one whose run was canceled shows `failed`
        stored = [status, *OPEN] if status == "failed" else [status]
        query = query.where(col(WebhookDelivery.status).in_(stored))
        fetch = limit + SHOWN_OTHERWISE if status in ("failed", *OPEN) else limit
    if event_id is not None:
        query = query.where(WebhookDelivery.event_id == event_id)
    with b.unit() as s:
        newest_first = (col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id).desc())
        rows = [as_dict(d) for d in s.exec(query.order_by(*newest_first).limit(fetch))]
    for row in rows:
        if row["status"] in OPEN and row["runId"]:
            _as_its_run_ended(b.client.store, row)
    return [row for row in rows if status is None or row["status"] == status][:limit]


SHOWN_OTHERWISE = 200  # rows read beyond --limit for a status some rows are shown other than stored


OPEN = ("pending", "retrying")


def _as_its_run_ended(store, row: dict) -> None:
    """A delivery still open whose run ended canceled (`runs cancel`; no failure hook runs for a
    canceled run) is shown `failed`, saying so: it used to read `retrying` for ever, with a
    next attempt long past."""
    if store.run_status(row["runId"]) == RunStatus.CANCELED:
        row["status"] = "failed"
        row["nextAttemptAt"] = None
        row["lastError"] = (
            f"its run {row['runId']} was canceled"
            + (f" (last: {row['lastError']})" if row["lastError"] else "")
            + f"; flowjobs events redeliver {row['eventId']} sends it again"
        )
