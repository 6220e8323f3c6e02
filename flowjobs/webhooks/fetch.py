"""`flowjobs events fetch`: Stripe events the inbox never received (the endpoint was down longer
than Stripe retries, a webhook secret was rotated wrong, a deployment had no `serve`), read back
from Stripe's Events API (Stripe keeps them 30 days) and stored and routed as if they had
arrived. An event already in the inbox is a duplicate: nothing runs twice.

Events are listed per type (one `type` filter a call, which the Events API and localstripe both
take), then ingested oldest first, so that handlers meet them in the order Stripe made them.
Each is parsed and checked like a replayed file (`webhooks.replay`); one that names objects this
database does not have (another application on the same Stripe account) is skipped and said so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from flowjobs.errors import BadInput
from flowjobs.webhooks import inbox, parse, routes
from flowjobs.webhooks.replay import admissible, replay

PAGE = 100  # the Events API's largest page


@dataclass
class Fetched:
    event_id: str
    type: str
    created: int  # epoch seconds, as Stripe writes it
    status: str  # created | duplicate | ignored | skipped | new (a dry run) | in the inbox
    run: str | None = None
    detail: str = ""
    object: str | None = None  # the id of what the event is about (pi_…, ch_…)

    def as_dict(self) -> dict:
        return {
            "eventId": self.event_id,
            "type": self.type,
            "object": self.object,
            "created": self.created,
            "status": self.status,
            "run": self.run,
            "detail": self.detail or None,
        }


def handled_types() -> list[str]:
    """The Stripe event types flowjobs routes to a handler (the default of `--type`)."""
    return sorted(routes.STRIPE)


def list_events(b, live: bool, types: list[str], since_s: int, limit: int) -> tuple[list, bool]:
    """Stripe's events of `types` created at `since_s` or later, oldest first, at most `limit`
    (the oldest ones); and whether more were there. Stripe lists newest first, so the whole
    window is read before any is cut (it keeps events 30 days: a bounded read)."""
    gateway = b.gateway
    client = gateway.client(live)
    found: dict[str, dict] = {}
    for kind in types:
        params: dict = {"type": kind, "created": {"gte": since_s}, "limit": PAGE}
        while True:
            page = gateway.call(client.v1.events.list, params=dict(params))
            for event in page.data:
                found.setdefault(event.id, event.to_dict())
            if not page.has_more or not page.data:
                break
            params["starting_after"] = page.data[-1].id
    events = sorted(found.values(), key=lambda e: (e.get("created") or 0, e["id"]))
    return events[:limit], len(events) > limit


def fetch(b, settings, events: list[dict], dry_run: bool = False) -> list[Fetched]:
    """Store and route each event as `replay-event` does, `via` "fetch"; with `dry_run`, only
    say which are new to the inbox."""
    done = []
    for event in events:
        item = Fetched(event["id"], event.get("type") or "", int(event.get("created") or 0), "")
        about = (event.get("data") or {}).get("object")
        item.object = about.get("id") if isinstance(about, dict) else None
        body = json.dumps(event, separators=(",", ":")).encode()
        try:
            incoming = parse.parse("stripe", body, {})
        except BadInput as exc:
            item.status, item.detail = "skipped", str(exc)
            done.append(item)
            continue
        incoming.signature = "unverified"
        incoming.signature_detail = "fetched from Stripe's Events API with the API key"
        if dry_run:
            with b.unit() as s:
                seen = inbox.existing(s, "stripe", event["id"])
            item.status = "in the inbox" if seen else "new"
            item.run = seen.run_id if seen else None
            if seen is None:  # what a real fetch would refuse, it says so here too
                try:
                    admissible(b, settings, incoming)
                except BadInput as exc:
                    item.status, item.detail = "skipped", str(exc)
            done.append(item)
            continue
        try:
            result = replay(b, settings, incoming, via="fetch")
        except BadInput as exc:  # another application's objects, a mode mismatch, …
            item.status, item.detail = "skipped", str(exc)
            done.append(item)
            continue
        item.run, item.detail = result.run_id, result.detail
        if result.duplicate:
            item.status = "duplicate"
        elif result.status == "ignored":
            item.status = "ignored"
        else:
            item.status = "created"
        done.append(item)
    return done
