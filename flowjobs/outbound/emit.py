"""Event rows (spec §2 `events`) and how they become deliveries.

`emit_event` writes one Flowglad event the way upstream does: insert-or-ignore on `hash` =
sha256 of the JSON of `{type, id}`, so one event per (type, object) however often the flow
runs. Billing code calls it inside its unit of work.

`Billing.unit()` watches its session (`watch`) and, before it commits, hands every event row
the unit inserted — through `emit_event` or any other code — to `dispatch.schedule_deliveries`
(`deliver_new_events`): the delivery records and their runs commit with the event itself, or
not at all (the job of upstream's `events:INSERT` → `event-inserted`, without a round trip
through Supabase).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlmodel import select

from flowjobs import ids
from flowjobs.billing.models import Customer, Event

NEW_EVENTS = "flowjobs.outbound.new_events"


def event_hash(event_type: str, object_id: str) -> str:
    return hashlib.sha256(
        json.dumps({"type": event_type, "id": object_id}, separators=(",", ":")).encode()
    ).hexdigest()


def emit_event(
    s,
    event_type: str,
    noun: str,
    object_id: str,
    *,
    organization_id: str,
    livemode: bool,
    customer: Customer | None = None,
    now: datetime | None = None,
) -> Event | None:
    """Insert the event unless one with its hash exists; return the new row (None if it existed)."""
    digest = event_hash(str(event_type), object_id)
    if s.exec(select(Event.id).where(Event.hash == digest)).first() is not None:
        return None
    now = now or s.info["now"]
    payload: dict[str, Any] = {"object": str(noun), "id": object_id}
    if customer is not None:
        payload["customer"] = {"id": customer.id, "externalId": customer.external_id}
    row = Event(
        id=ids.new_id("event"),
        livemode=livemode,
        type=str(event_type),
        payload=payload,
        occurred_at=now,
        submitted_at=now,
        object_entity=str(noun),
        object_id=object_id,
        hash=digest,
        organization_id=organization_id,
    )
    s.add(row)
    return row


def _collect(session, _context, _instances) -> None:
    for obj in session.new:
        if isinstance(obj, Event):
            session.info.setdefault(NEW_EVENTS, []).append(obj)


def watch(session) -> None:
    """Remember the event rows this session inserts (for `deliver_new_events`)."""
    sa_event.listen(session, "before_flush", _collect)


def deliver_new_events(b, session) -> None:
    """Schedule the deliveries of every event the session inserted, in its transaction."""
    session.flush()
    new = session.info.pop(NEW_EVENTS, [])
    if not new:
        return
    from flowjobs.outbound.dispatch import schedule_deliveries

    settings = getattr(b, "outbound", None)
    for row in new:
        schedule_deliveries(b, session, row, settings)


class OutboundEvents:
    """A unit-of-work hook (`flowjobs.store.units.UnitHook`): the event rows a unit inserts get
    their deliveries scheduled in the same transaction."""

    def __init__(self, billing):
        self.billing = billing

    def opened(self, session) -> None:
        watch(session)

    def closing(self, session) -> None:
        deliver_new_events(self.billing, session)
