"""`flowjobs replay-event FILE` and `events replay ID`: store an event from a file (or the
inbox) and trigger its handler — or, with a dry run, show what the handler would change.

A dry run does everything inside one transaction that is rolled back: the inbox row, the
handler's run, the handler itself (run here, synchronously), its follow-up triggers. The
rows of every billing, inbox and job table are compared before and after, and the
differences are what is printed. Stripe writes are refused; nothing is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import MetaData, Table, select

from flowjobs.core.clock import iso, iso_datetime
from flowjobs.errors import BadInput
from flowjobs.webhooks import inbox, parse
from flowjobs.webhooks.handle import handler_for, missing_reference


@dataclass
class DryRun:
    ingested: inbox.Ingested
    result: Any = None
    changes: list[dict] = field(default_factory=list)
    not_run: str | None = None  # why the handler was not run (it needs a Stripe key)

    def as_dict(self) -> dict:
        return {
            **self.ingested.as_dict(),
            "dryRun": True,
            "result": self.result,
            "changes": self.changes,
            "handlerNotRun": self.not_run,
        }


def read_incoming(
    settings, body: bytes, source: str | None = None, what: str = "the file"
) -> parse.Incoming:
    """Recognise a file (`what` names it in messages): a Stripe event, a Supabase payload, or
    an inbox export."""
    data = parse.load_json(body, what)
    headers: dict[str, str] = {}
    if (
        isinstance(data, dict)
        and isinstance(data.get("format"), str)
        and data["format"] in parse.EXPORT_BODY
    ):
        exported, body, headers = parse.from_export(data)
        if source and source != exported:
            raise BadInput(f"--source {source} does not match the export's source {exported}")
        source = exported
    source = source or parse.detect_source(data)
    incoming = parse.parse(source, body, headers)
    if source == "stripe" and parse.header(headers, "Stripe-Signature"):
        # the signature must match, at any age: the tolerance guards the HTTP endpoint against
        # a replayed request, and a stored export is replayed on purpose, days later too (it
        # was refused five minutes after it had been received)
        parse.verify_stripe(incoming, endpoint_secrets(settings, incoming.livemode), None)
    else:
        incoming.signature = "unverified"
        incoming.signature_detail = (
            "replayed without a signature" if source == "stripe" else "Supabase payloads carry none"
        )
    return incoming


def endpoint_secrets(settings, livemode: bool | None) -> list[tuple[str, str]]:
    s = settings.stripe
    primary = s.webhook_secret if livemode else (s.test_webhook_secret or s.webhook_secret)
    return [
        (
            "webhook_secret" if livemode or not s.test_webhook_secret else "test_webhook_secret",
            primary,
        ),
        ("connect_webhook_secret", s.connect_webhook_secret),
    ]


def admissible(
    b, settings, incoming: parse.Incoming, require_signature=False, allow_mode_mismatch=False
) -> None:
    """BadInput unless the event may be stored and routed here: its signature and mode as
    required, and no object it names missing from this database."""
    inbox.check(
        incoming,
        expected_live=settings.stripe.mode == "live",
        require_signature=require_signature,
        allow_mode_mismatch=allow_mode_mismatch,
    )
    missing = missing_reference(b, incoming.source, incoming.event)
    if missing:
        raise BadInput(f"the event refers to objects that do not exist here: {missing}")


def replay(
    b,
    settings,
    incoming: parse.Incoming,
    *,
    require_signature=False,
    allow_mode_mismatch=False,
    force=False,
    dry_run=False,
    via="file",
):
    admissible(b, settings, incoming, require_signature, allow_mode_mismatch)
    if not dry_run:
        return inbox.ingest(b, incoming, via=via, force=force)
    with b.dry_run() as session:
        before = snapshot(session)
        ingested = inbox.ingest(b, incoming, via=via, force=force)
        result, not_run = None, None
        if ingested.task is not None and ingested.status == "routed" and not ingested.duplicate:
            result, not_run = _handle(b, session, ingested.task, incoming.event)
        session.flush()
        return DryRun(ingested, result, diff(before, snapshot(session)), not_run)


def _handle(b, session, task: str, event: dict) -> tuple[Any, str | None]:
    """Run the handler in a savepoint: (its result, None); or (None, why) when it needs a
    Stripe API key this configuration lacks, its writes so far undone. A real replay only
    queues the handler and needs no key, so neither may a dry run."""
    from flowjobs.adapters.stripe_gateway import NoStripeKey

    savepoint = session.begin_nested()
    try:
        result = handler_for(task)(b, event)
        session.flush()
    except NoStripeKey as exc:
        savepoint.rollback()
        mode = "live" if exc.livemode else "test"
        return None, (
            f"it calls Stripe, and this configuration has no Stripe {mode}-mode API key "
            f"([stripe] {mode}_api_key or FLOWJOBS_STRIPE_{mode.upper()}_API_KEY)"
        )
    savepoint.commit()
    return result, None


def tables(session) -> list[Table]:
    from flowjobs.billing import models as _billing  # noqa: F401  (each module adds its tables)
    from flowjobs.store.tables import metadata
    from flowjobs.webhooks import models as _inbox  # noqa: F401

    found = list(metadata.sorted_tables)
    found.append(Table("flowjobs_runs", MetaData(), autoload_with=session.connection()))
    return found


def snapshot(session) -> dict[str, dict[str, dict]]:
    rows: dict[str, dict[str, dict]] = {}
    for table in tables(session):
        rows[table.name] = {
            r["id"]: dict(r) for r in session.connection().execute(select(table)).mappings()
        }
    return rows


def _show(value, column: str = "") -> Any:
    """A column's value as a dry run reports it: times as ISO UTC with milliseconds, as every
    command shows them (a datetime, or a job table's epoch milliseconds in a `…_at` column)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, datetime):
        return iso_datetime(value)
    if column.endswith("_at") and isinstance(value, int) and not isinstance(value, bool):
        return iso(value)
    return value if isinstance(value, (int, float, bool, type(None))) else str(value)


def diff(before: dict, after: dict) -> list[dict]:
    changes = []
    for table, rows in after.items():
        old_rows = before.get(table, {})
        for row_id, row in rows.items():
            old = old_rows.get(row_id)
            if old is None:
                changes.append(
                    {
                        "table": table,
                        "id": row_id,
                        "change": "insert",
                        "columns": {
                            k: [None, _show(v, k)] for k, v in row.items() if v is not None
                        },
                    }
                )
            elif old != row:
                changes.append(
                    {
                        "table": table,
                        "id": row_id,
                        "change": "update",
                        "columns": {
                            k: [_show(old[k], k), _show(v, k)]
                            for k, v in row.items()
                            if old.get(k) != v
                        },
                    }
                )
        for row_id in old_rows.keys() - rows.keys():
            changes.append({"table": table, "id": row_id, "change": "delete", "columns": {}})
    return changes
