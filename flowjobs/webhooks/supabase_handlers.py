"""What each Supabase database webhook does (spec §9).

Supabase sends records with snake_case column names and ISO timestamps. Upstream read three
of them as camelCase by mistake (`organizationId`, `userId`, …) and so never found anything;
here every record goes through `shapes.normalise`, which maps keys to snake_case explicitly,
and is read through its model (shapes.SUPABASE_RECORDS), never as a raw dict.
"""

from __future__ import annotations

from sqlmodel import col, select

from flowjobs.billing.models import Event, Invoice, Organization, Payment, User
from flowjobs.errors import BadInput, NotFound
from flowjobs.webhooks import shapes


def _records(payload: dict, model: type) -> tuple:
    """The payload's record and old record, validated and normalised (shapes.SUPABASE_RECORDS)."""
    event = shapes.supabase_event(payload)
    if not isinstance(event.record, model):  # routing picks the handler by table and type
        raise shapes.BadShape(f"a {event.kind} payload is not handled as {model.__name__}")
    return event.record, event.old


def customer_inserted(b, payload: dict) -> dict:
    record, _ = _records(payload, shapes.CustomerRecord)
    missing = [k for k in ("id", "organization_id", "email", "name") if not getattr(record, k)]
    if missing:
        raise BadInput(f"customer record is missing {', '.join(missing)}")
    return {"customerId": record.id, "valid": True}


def invoice_updated(b, payload: dict) -> dict:
    """An invoice that became `paid`: its first settled payment's receipt (upstream took the
    first payment of any status — a declined attempt before the one that paid got the receipt,
    and that one none)."""
    from flowjobs.documents.data import RECEIPTED

    record, old = _records(payload, shapes.InvoiceRecord)
    if not (record.status == "paid" and old.status != "paid"):
        return {"result": "ignored", "detail": "not a transition into paid"}
    with b.unit() as s:
        invoice = s.get(Invoice, record.id)
        if invoice is None:
            raise NotFound(f"invoice {record.id} does not exist")
        payment = s.exec(
            select(Payment)
            .where(Payment.invoice_id == invoice.id, col(Payment.status).in_(list(RECEIPTED)))
            .order_by(col(Payment.created_at), col(Payment.id))
        ).first()
        if payment is None:
            return {"result": "no settled payment", "invoiceId": invoice.id}
        b.trigger(
            s,
            "generate-payment-receipt-pdf",
            {"paymentId": payment.id},
            key=f"generate-payment-receipt-pdf-{payment.id}",
        )
        return {"result": "receipt requested", "invoiceId": invoice.id, "paymentId": payment.id}


def event_inserted(b, payload: dict) -> dict:
    """Schedule the delivery of a Flowglad event to its organisation's webhook endpoints.

    Upstream committed `processed_at` and then called Svix, so a failed delivery was never
    retried (§13.13). Here the delivery records and their runs (flowjobs.outbound.dispatch,
    one per matching endpoint, keyed by event hash + endpoint) are inserted in the same
    transaction that sets `processed_at`: "processed" means every delivery is scheduled, and
    each delivery retries on its own. Events that flowjobs writes itself are scheduled when
    they are written (flowjobs.outbound.emit); this handler serves events inserted by others.
    """
    from flowjobs.outbound.dispatch import schedule_deliveries

    record, _ = _records(payload, shapes.Record)
    with b.unit() as s:
        event = s.get(Event, record.id)
        if event is None:
            raise NotFound(f"event {record.id} does not exist")
        if event.processed_at is not None:
            return {"result": "already_processed", "eventId": event.id}
        return schedule_deliveries(b, s, event, getattr(b, "outbound", None))


def member_inserted(b, payload: dict) -> dict:
    record, _ = _records(payload, shapes.MembershipRecord)
    with b.unit() as s:
        user = s.get(User, record.user_id or "")
        if user is None:
            raise NotFound(
                f"user {record.user_id} does not exist"
                if record.user_id
                else "the membership names no user (user_id is missing)"
            )
        if not user.email:
            raise BadInput(f"user {user.id} has no email address")
        return {"userId": user.id, "email": user.email, "newsletter": "not configured"}


def organization_updated(b, payload: dict) -> dict:
    record, old = _records(payload, shapes.OrganizationRecord)
    if not (record.payouts_enabled is True and not old.payouts_enabled):
        return {"result": "ignored", "detail": "payouts_enabled did not turn on"}
    with b.unit() as s:
        org = s.get(Organization, record.id)
        if org is None:
            raise NotFound(f"organization {record.id} does not exist")
        b.trigger(
            s,
            "send-organization-payouts-enabled-notification",
            {"organizationId": org.id},
            key=f"send-organization-payouts-enabled-notification-{org.id}",
        )
        return {"result": "notified", "organizationId": org.id}


HANDLERS = {
    "customer-inserted": customer_inserted,
    "invoice-updated": invoice_updated,
    "event-inserted": event_inserted,
    "member-inserted": member_inserted,
    "organization-updated": organization_updated,
}

REFERENCES = {"invoices": Invoice, "organizations": Organization, "events": Event}


def missing_reference(b, payload: dict) -> str | None:
    event = shapes.supabase_event(payload)
    record, table = event.record, event.payload.table
    if record is None:  # a kind flowjobs does not route: it names nothing
        return None
    with b.unit() as s:
        if table in REFERENCES and s.get(REFERENCES[table], record.id or "") is None:
            return f"{table[:-1]} {record.id} does not exist"
        if table == "memberships" and s.get(User, getattr(record, "user_id", None) or "") is None:
            if not record.user_id:
                return "the membership names no user (user_id is missing)"
            return f"user {record.user_id} does not exist"
        if (
            table == "customers"
            and s.get(Organization, getattr(record, "organization_id", None) or "") is None
        ):
            return f"organization {record.organization_id} does not exist"
    return None
