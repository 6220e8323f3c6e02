"""Helpers for the webhook tests: real Stripe events from localstripe, signed bodies, files."""

from __future__ import annotations

import json
import time

SECRET = "whsec_flowjobs_test"


def stripe_client(localstripe_url: str):
    import stripe

    return stripe.StripeClient("sk_test_flowjobs", base_addresses={"api": localstripe_url}, max_network_retries=0)


def event_for(localstripe_url: str, event_type: str, object_id: str) -> dict:
    """The event localstripe produced for `object_id` (as the Stripe API lists it)."""
    events = stripe_client(localstripe_url).v1.events.list(params={"type": event_type, "limit": 100})
    for event in events.data:
        data = event.to_dict()
        if data["data"]["object"]["id"] == object_id:
            return data
    raise AssertionError(f"localstripe has no {event_type} event for {object_id}")


def signed_export(event: dict, secret: str = SECRET, timestamp: int | None = None, tamper: bool = False) -> dict:
    """An inbox-export file carrying the body and a Stripe-Signature header for it."""
    import base64

    import stripe

    body = json.dumps(event).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    signature = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=ts)
    if tamper:
        body = body.replace(b'"livemode"', b'"livemode" ', 1)
    return {"format": "flowjobs-inbox-event/1", "source": "stripe", "headers": {"Stripe-Signature": signature},
            "body_base64": base64.b64encode(body).decode()}


def write(tmp_path, name: str, content) -> str:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return str(path)
