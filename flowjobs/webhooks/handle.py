"""Running a handler on a stored event: the task body of every webhook handler task."""

from __future__ import annotations

from flowjobs.webhooks import inbox
from flowjobs.webhooks.parse import load_json


def handler_for(task_id: str):
    from flowjobs.webhooks import stripe_handlers, supabase_handlers

    return stripe_handlers.HANDLERS.get(task_id) or supabase_handlers.HANDLERS[task_id]


def handle(b, task_id: str, inbox_id: str) -> dict:
    row = inbox.load(b, inbox_id)
    event = load_json(row.body, f"stored event {row.id}")
    return handler_for(task_id)(b, event)


def missing_reference(b, source: str, event: dict) -> str | None:
    from flowjobs.webhooks import stripe_handlers, supabase_handlers

    module = stripe_handlers if source == "stripe" else supabase_handlers
    return module.missing_reference(b, event)
