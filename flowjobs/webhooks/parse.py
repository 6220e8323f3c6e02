"""Recognising, verifying and keying incoming events — pure functions of bytes and settings.

- Stripe: a JSON `event` object (`id` evt_…, `type`, `data.object`), verified on the raw bytes
  with the `stripe` SDK (`Stripe-Signature`), first with the endpoint's secret, then with the
  Connect secret. Key: the event id.
- Supabase: `{type: INSERT|UPDATE|DELETE, table, schema, record, old_record}`. It has no id, so
  the key is `<table>:<type>:<record primary key>:<sha256 of the canonical record>[:12]`: the
  same delivery twice has one key, a later change of the same row another.
- An inbox export (`flowjobs events export`): the stored raw body and headers, replayed as
  they arrived (so a Stripe signature is verified again).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from flowjobs.core.clock import iso_datetime
from flowjobs.errors import BadInput
from flowjobs.webhooks.shapes import MAX_DEPTH, BadShape, stripe_event, supabase_event

SUPABASE_TYPES = ("INSERT", "UPDATE", "DELETE")
EXPORT_FORMAT = "flowjobs-inbox-event/2"
# Every format `events export` ever wrote → the key holding the body (/1 spelt it in snake_case
# beside its camelCase keys; /2 is camelCase throughout). Files of every format are read.
EXPORT_BODY = {"flowjobs-inbox-event/1": "body_base64", EXPORT_FORMAT: "bodyBase64"}


class Rejected(BadInput):
    """The event failed verification (signature, mode) — recorded as `rejected` over HTTP."""


@dataclass
class Incoming:
    source: str
    body: bytes
    event: dict
    headers: dict[str, str] = field(default_factory=dict)
    event_id: str | None = None
    type: str | None = None
    livemode: bool | None = None
    account: str | None = None
    signature: str = "unverified"  # verified | unverified | invalid | missing
    signature_detail: str | None = None


class _Refused(ValueError):
    """JSON that Python's reader would accept but an event must not contain."""


def _object(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(
                    f"has a duplicate key {json.dumps(key)[:60]} in one object (each key may appear once)"
                )
            seen.add(key)
    return obj


def _constant(name: str):
    raise _Refused(f"is not valid JSON: {name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"is not valid JSON: the number {text[:30]} is too large")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_tree(data: Any) -> None:
    """At most MAX_DEPTH levels of nesting and no lone surrogate (text that is not Unicode)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise _Refused(
                    "is not valid Unicode: a string holds a lone surrogate escape (\\ud800-\\udfff)"
                )
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise _Refused("is nested too deeply to be an event")
        if isinstance(value, dict):
            stack.extend((key, depth) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        else:
            stack.extend((item, depth + 1) for item in value)


def load_json(body: bytes, what: str = "body") -> Any:
    """Strict JSON: UTF-8, no duplicate keys, finite numbers, Unicode strings, bounded nesting."""
    try:
        data = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_float=_float,
        )
        _check_tree(data)
        return data
    except UnicodeDecodeError:
        raise BadInput(f"{what} is not UTF-8 text") from None
    except _Refused as exc:
        raise BadShape(f"{what} {exc}") from None
    except RecursionError:
        raise BadInput(f"{what} is nested too deeply to be an event") from None
    except ValueError as exc:
        raise BadInput(f"{what} is not valid JSON: {exc}") from None


def detect_source(data: Any) -> str:
    if isinstance(data, dict) and data.get("object") == "event" and "type" in data:
        return "stripe"
    if isinstance(data, dict) and data.get("type") in SUPABASE_TYPES and "table" in data:
        return "supabase"
    raise BadInput(
        'not a recognisable event: expected a Stripe event (object "event" with id, type, data) '
        "or a Supabase webhook payload (type INSERT/UPDATE/DELETE, table, record)"
    )


def from_export(data: dict) -> tuple[str, bytes, dict[str, str]]:
    """(source, raw body, headers) from an inbox export."""
    try:
        return (
            data["source"],
            base64.b64decode(data[EXPORT_BODY[data["format"]]], validate=True),
            dict(data.get("headers") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"not a valid inbox export: {exc}") from None


def to_export(row) -> dict:
    return {
        "format": EXPORT_FORMAT,
        "id": row.id,
        "source": row.source,
        "eventId": row.event_id,
        "type": row.type,
        "receivedAt": iso_datetime(row.received_at),
        "headers": row.headers,
        "bodyBase64": base64.b64encode(row.body).decode(),
    }


def parse(source: str, body: bytes, headers: dict[str, str] | None = None) -> Incoming:
    data = load_json(body)
    if source == "stripe":
        return _stripe(body, data, headers or {})
    if source == "supabase":
        return _supabase(body, data, headers or {})
    raise BadInput(f"unknown source {source!r}; use stripe or supabase")


def _stripe(body: bytes, data: Any, headers: dict) -> Incoming:
    if not isinstance(data, dict) or data.get("object") != "event":
        raise BadShape('not a Stripe event: the JSON object needs "object": "event"')
    event = stripe_event(data).envelope
    return Incoming(
        "stripe", body, data, headers, event.id, event.type, event.livemode, event.account
    )


def _supabase(body: bytes, data: Any, headers: dict) -> Incoming:
    if not isinstance(data, dict) or data.get("type") not in SUPABASE_TYPES:
        raise BadShape('not a Supabase payload: "type" must be INSERT, UPDATE or DELETE')
    event = supabase_event(data)
    record, table, kind = event.key_record, event.payload.table, event.payload.type
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    key = f"{table}:{kind}:{record['id']}:{digest}"
    livemode = record.get("livemode")
    return Incoming(
        "supabase",
        body,
        data,
        headers,
        key,
        f"{table}:{kind}",
        livemode if isinstance(livemode, bool) else None,
    )


def header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def verify_stripe(
    incoming: Incoming, secrets: list[tuple[str, str]], tolerance: float | None
) -> None:
    """Set `incoming.signature` from the Stripe-Signature header; `secrets` = [(name, secret)].
    `tolerance`: the oldest signature accepted, in seconds; None: any age (a stored event)."""
    import stripe

    signature = header(incoming.headers, "Stripe-Signature")
    if not signature:
        incoming.signature, incoming.signature_detail = "missing", "no Stripe-Signature header"
        return
    usable = [(name, secret) for name, secret in secrets if secret]
    if not usable:
        incoming.signature, incoming.signature_detail = "invalid", "no webhook secret is configured"
        return
    if not signature.isascii():  # the SDK's comparison raised TypeError on it: a 500
        incoming.signature, incoming.signature_detail = "invalid", "a Stripe-Signature not ASCII"
        return
    details = []
    for name, secret in usable:
        try:
            # the signature only: the body is read by flowjobs' own strict reader and models
            stripe.WebhookSignature.verify_header(
                incoming.body,
                signature,
                secret,
                tolerance=None if tolerance is None else int(tolerance),
            )
        except (stripe.SignatureVerificationError, ValueError) as exc:  # ValueError: not UTF-8
            details.append(str(exc))
            continue
        incoming.signature, incoming.signature_detail = "verified", f"verified with {name}"
        return
    # the most telling: a signature that matched but is too old, whichever secret said it
    late = [d for d in details if "tolerance" in d.lower()]
    incoming.signature, incoming.signature_detail = "invalid", (late or details)[0]
