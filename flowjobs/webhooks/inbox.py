"""Storing events and routing them: the inbox row and the handler's run commit together.

`ingest` is used by the HTTP intake and `flowjobs replay-event`: verify, then — in one
transaction — insert the inbox row (unique per source and event key) and trigger the handler
task keyed `<source>:<event key>`. The same event again returns the first row and run; with
`force` it is stored again (no key) and triggers a new run linked to the first.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from flowjobs import ids
from flowjobs.webhooks import routes
from flowjobs.webhooks.models import InboxEvent
from flowjobs.webhooks.parse import Incoming, Rejected


@dataclass
class Ingested:
    inbox_id: str
    status: str  # routed | ignored | rejected
    task: str | None
    run_id: str | None
    duplicate: bool = False
    signature: str = "unverified"
    detail: str = ""

    def as_dict(self) -> dict:
        return {
            "inboxId": self.inbox_id,
            "status": self.status,
            "task": self.task,
            "runId": self.run_id,
            "duplicate": self.duplicate,
            "signature": self.signature,
            "detail": self.detail or None,
        }


def check(
    incoming: Incoming,
    *,
    expected_live: bool | None,
    require_signature: bool,
    allow_mode_mismatch: bool,
    over_http: bool = False,
) -> None:
    """Raise Rejected when the event must not be processed (`over_http`: posted to a mode's
    endpoint, not replayed under a configuration)."""
    if incoming.signature == "invalid":
        raise Rejected(f"signature check failed: {incoming.signature_detail}")
    if incoming.signature in ("missing", "unverified") and require_signature:
        raise Rejected(
            f"the event is not signed ({incoming.signature_detail or 'no signature'}) "
            "and a signature is required"
        )
    if (
        incoming.source == "stripe"
        and expected_live is not None
        and incoming.livemode is not None
        and incoming.livemode != expected_live
        and not allow_mode_mismatch
    ):
        got, want = ("live", "test") if incoming.livemode else ("test", "live")
        if over_http:
            raise Rejected(
                f"a {got}-mode event posted to the {want}-mode endpoint "
                f"(/webhooks/stripe/{want}mode); Stripe sends {got}-mode events to "
                f"/webhooks/stripe/{got}mode"
            )
        raise Rejected(
            f"a {got}-mode event cannot be processed by a {want}-mode configuration "
            "(--allow-mode-mismatch to do it anyway)"
        )


def _row(incoming: Incoming, now, via: str, **fields) -> InboxEvent:
    return InboxEvent(
        id=ids.new_id("whevt"),
        source=incoming.source,
        event_id=incoming.event_id,
        type=incoming.type,
        livemode=incoming.livemode,
        account=incoming.account,
        body=incoming.body,
        headers=incoming.headers,
        signature=incoming.signature,
        signature_detail=incoming.signature_detail,
        received_at=now,
        via=via,
        **fields,
    )


REJECTED_BODY_KEPT = 8192
BODY_BYTES = "X-Flowjobs-Body-Bytes"  # a refused request's size when its body was cut


def record_rejected(
    b, source: str, body: bytes, headers: dict, reason: str, incoming: Incoming | None = None
) -> str:
    """Keep a rejected request (bad signature, wrong mode, malformed) for inspection: its
    first `REJECTED_BODY_KEPT` bytes (anyone may send these, up to `[server] max_body` each:
    kept whole, 20 of them grew a database by 21 MB)."""
    with b.unit() as s:
        if incoming is None:
            incoming = Incoming(source, body, {}, headers, signature="invalid")
        kept = incoming.body[:REJECTED_BODY_KEPT]
        row = _row(incoming, s.info["now"], "http", status="rejected", error=reason[:2000])
        if len(kept) < len(incoming.body):  # the size received, beside the headers kept
            row.body = kept
            row.headers = {**(row.headers or {}), BODY_BYTES: str(len(incoming.body))}
        s.add(row)
        return row.id


def existing(s, source: str, key: str) -> InboxEvent | None:
    return s.exec(
        select(InboxEvent).where(InboxEvent.source == source, InboxEvent.dedup_key == key)
    ).first()


def ingest(b, incoming: Incoming, *, via: str, force: bool = False) -> Ingested:
    try:
        return _ingest(b, incoming, via, force)
    except IntegrityError:  # the same event arrived twice at once: the other one won
        return _ingest(b, incoming, via, force)


def _ingest(b, incoming: Incoming, via: str, force: bool) -> Ingested:
    if incoming.event_id is None:  # parse() always sets it; only a rejected request lacks one
        raise ValueError("only a parsed event (one with an id) can be ingested")
    with b.unit() as s:
        first = existing(s, incoming.source, incoming.event_id)
        if first is not None and not force:
            return Ingested(
                first.id,
                first.status,
                first.task,
                first.run_id,
                True,
                first.signature,
                f"duplicate of {first.run_id or first.id}",
            )
        task = routes.task_for(incoming.source, incoming.type)
        row = _row(
            incoming,
            s.info["now"],
            via,
            dedup_key=None if first else incoming.event_id,
            replay_of=first.id if first else None,
            task=task,
        )
        s.add(row)
        s.flush()
        if task is None:
            row.status = "ignored"
            return Ingested(
                row.id,
                row.status,
                None,
                None,
                False,
                row.signature,
                f"no handler for {incoming.type!r}; stored and ignored",
            )
        key = f"{incoming.source}:{incoming.event_id}" + (f":replay:{row.id}" if first else "")
        run = b.client.trigger(
            task,
            {"inboxId": row.id},
            session=s,
            idempotency_key=key,
            replay_of=first.run_id if first else None,
        )
        row.status, row.run_id = "routed", run.id
        return Ingested(
            row.id,
            row.status,
            task,
            run.id,
            False,
            row.signature,
            f"replay of {first.run_id}" if first else "",
        )


def load(b, inbox_id: str) -> InboxEvent:
    from flowjobs.errors import NotFound

    with b.unit() as s:
        row = s.get(InboxEvent, inbox_id)
        if row is None:
            raise NotFound(f"no inbox event {inbox_id!r}")
        return row


def listing(b, source=None, type_=None, status=None, limit: int = 50) -> list[InboxEvent]:
    with b.unit() as s:
        query = select(InboxEvent)
        for column, value in (
            (InboxEvent.source, source),
            (InboxEvent.type, type_),
            (InboxEvent.status, status),
        ):
            if value is not None:
                query = query.where(column == value)
        newest_first = (col(InboxEvent.received_at).desc(), col(InboxEvent.id).desc())
        return list(s.exec(query.order_by(*newest_first).limit(limit)))
