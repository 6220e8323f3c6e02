"""Helpers for the webhook tests: real Stripe events from localstripe, signed bodies, files."""

from __future__ import annotations

import json
import time

SECRET = "whsec_flowjobs_test"


def stripe_client(localstripe_url: str):
    import stripe

    return stripe.StripeClient(
        "sk_test_flowjobs", base_addresses={"api": localstripe_url}, max_network_retries=0
    )


def event_for(localstripe_url: str, event_type: str, object_id: str) -> dict:
    """The event localstripe produced for `object_id` (as the Stripe API lists it)."""
    client, params = stripe_client(localstripe_url), {"type": event_type, "limit": 100}
    while True:  # every page: localstripe lists oldest first, and a session makes hundreds
        page = client.v1.events.list(params=params)
        for event in page.data:
            data = event.to_dict()
            if data["data"]["object"]["id"] == object_id:
                return data
        if not page.has_more or not page.data:
            break
        params = {**params, "starting_after": page.data[-1].id}
    raise AssertionError(f"localstripe has no {event_type} event for {object_id}")


def signed_export(
    event: dict, secret: str = SECRET, timestamp: int | None = None, tamper: bool = False
) -> dict:
    """An inbox-export file carrying the body and a Stripe-Signature header for it."""
    import base64

    import stripe

    body = json.dumps(event).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    signature = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=ts
    )
    if tamper:
        body = body.replace(b'"livemode"', b'"livemode" ', 1)
    return {
        "format": "flowjobs-inbox-event/2",
        "source": "stripe",
        "headers": {"Stripe-Signature": signature},
        "bodyBase64": base64.b64encode(body).decode(),
    }


def write(tmp_path, name: str, content) -> str:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return str(path)


def charged_but_unrecorded(rt, card=None):
    """A billing run whose charge reached Stripe (localstripe) but whose outcome was never written."""
    from flowjobs.billing.runs import _prepare, record_intent
    from tests.billing_helpers import seed

    seeded = seed(rt, **({"card": card} if card else {}))
    charge = _prepare(rt.billing, seeded.billing_run_id, "run_lost")
    result = rt.billing.gateway.charge_off_session(
        livemode=False,
        amount=charge.amount,
        currency=charge.currency,
        customer=charge.customer,
        payment_method=charge.payment_method,
        metadata=charge.metadata,
        idempotency_key=charge.idempotency_key,
    )
    # as a billing run does before confirming: events name the payment's recorded PaymentIntent
    assert record_intent(rt.billing, charge, result.payment_intent_id, "run_lost")
    return seeded, result


def envelope(
    event_id: str, event_type: str, obj: dict, created: int | None = None, **fields
) -> dict:
    """The event Stripe sends around `obj` (for the objects localstripe emits no event for)."""
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "api_version": "2017-08-15",
        "created": created if created is not None else obj.get("created", 1_700_000_000) + 1,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": obj},
        **fields,
    }


ACCOUNT_ID = "acct_1FuzzAccount"


def real_events(rt, localstripe_url: str) -> dict[str, dict]:
    """One event of every kind flowjobs routes (and one it ignores), for objects that exist in
    `rt`'s database: Stripe events produced by localstripe for real PaymentIntents, a real
    failed Charge and a real SetupIntent (wrapped in Stripe's envelope: localstripe emits no
    event for them), an `account.updated` as Stripe documents it, and Supabase payloads for
    real rows. Seeds `rt` (two billing runs charged at localstripe but not recorded)."""
    from sqlmodel import select

    from flowjobs.billing.models import Organization, Payment, PaymentMethod
    from tests.billing_helpers import DECLINING

    seeded, charge = charged_but_unrecorded(rt)
    declined, failed = charged_but_unrecorded(rt, card=DECLINING)
    client = stripe_client(localstripe_url)
    failed_charge = event_for(
        localstripe_url, "payment_intent.payment_failed", failed.payment_intent_id
    )
    with rt.billing.unit() as s:
        org = s.get(Organization, seeded.org_id)
        org.stripe_account_id = ACCOUNT_ID
        stripe_pm = s.get(PaymentMethod, seeded.method_id).stripe_payment_method_id
        invoice_id = s.exec(
            select(Payment.invoice_id).where(Payment.billing_run_id == seeded.billing_run_id)
        ).one()
    intent = client.v1.setup_intents.create(params={"customer": seeded.stripe_customer})
    intent = client.v1.setup_intents.confirm(
        intent.id, params={"payment_method": stripe_pm}
    ).to_dict()
    account = {
        "id": ACCOUNT_ID,
        "object": "account",
        "type": "express",
        "charges_enabled": True,
        "details_submitted": True,
        "payouts_enabled": True,
        "created": 1_700_000_000,
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "requirements": {
            "currently_due": [],
            "eventually_due": [],
            "past_due": [],
            "disabled_reason": None,
        },
        "tos_acceptance": {"date": 1_700_000_000, "ip": "203.0.113.7"},
        "metadata": {},
    }
    return {
        "payment_intent.succeeded": event_for(
            localstripe_url, "payment_intent.succeeded", charge.payment_intent_id
        ),
        "payment_intent.payment_failed": failed_charge,
        "charge.failed": envelope(
            "evt_1ChargeFailed", "charge.failed", failed_charge["data"]["object"]["latest_charge"]
        ),
        "setup_intent.succeeded": envelope("evt_1SetupIntent", "setup_intent.succeeded", intent),
        "account.updated": envelope(
            "evt_1AccountUpdated", "account.updated", account, account=ACCOUNT_ID
        ),
        "customer.created": event_for(
            localstripe_url, "customer.created", declined.stripe_customer
        ),
        "organizations:UPDATE": {
            "type": "UPDATE",
            "table": "organizations",
            "schema": "public",
            "record": {"id": seeded.org_id, "name": "Acme", "payouts_enabled": True},
            "old_record": {"id": seeded.org_id, "name": "Acme", "payouts_enabled": False},
        },
        "invoices:UPDATE": {
            "type": "UPDATE",
            "table": "invoices",
            "schema": "public",
            "record": {"id": invoice_id, "status": "paid", "livemode": False},
            "old_record": {"id": invoice_id, "status": "open", "livemode": False},
        },
        "customers:INSERT": {
            "type": "INSERT",
            "table": "customers",
            "schema": "public",
            "old_record": None,
            "record": {
                "id": seeded.customer_id,
                "organization_id": seeded.org_id,
                "email": "ada@example.com",
                "name": "Ada Lovelace",
                "livemode": False,
            },
        },
    }
