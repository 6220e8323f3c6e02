"""Which task handles which event (spec §8.2, §9). Unknown types are stored and `ignored`."""

STRIPE = {
    "payment_intent.succeeded": "stripe-payment-intent-succeeded",
    "payment_intent.payment_failed": "stripe-payment-intent-payment-failed",
    "payment_intent.canceled": "stripe-payment-intent-canceled",
    "payment_intent.processing": "stripe-payment-intent-processing",
    "payment_intent.requires_action": "stripe-payment-intent-requires-action",  # upstream never routed it
    "charge.failed": "stripe-charge-failed",
    "charge.refunded": "stripe-charge-refunded",  # upstream never routed it (billing/refunds.py)
    "setup_intent.succeeded": "setup-intent-succeeded",
    "account.updated": "stripe-account-updated",  # Connect
}

SUPABASE = {
    "customers:INSERT": "customer-inserted",
    "invoices:UPDATE": "invoice-updated",
    "events:INSERT": "event-inserted",
    "memberships:INSERT": "member-inserted",
    "organizations:UPDATE": "organization-updated",
}

HANDLER_TASKS = sorted(set(STRIPE.values()) | set(SUPABASE.values()))


def task_for(source: str, event_type: str | None) -> str | None:
    return (STRIPE if source == "stripe" else SUPABASE).get(event_type or "")
