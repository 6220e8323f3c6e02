"""`flowjobs replay-event FILE`, `flowjobs events list|show|replay|export|fetch` (the inbox) and
`flowjobs events deliveries|redeliver` (outbound webhooks to merchants)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from flowjobs.cli import output
from flowjobs.cli.filters import (
    DELIVERY_STATUSES,
    EVENT_SOURCES,
    EVENT_STATUSES,
    completer,
    one_of,
)
from flowjobs.errors import BadInput

MAX_FILE = 10 * 1024 * 1024  # Stripe events are a few KB; Supabase rows rarely more

app = typer.Typer(
    help="The webhook inbox: every received event, stored before anything else.",
    no_args_is_help=True,
)


def outcome(result) -> dict:
    """What `replay-event` and `events replay` print, in one shape whatever happened:
    `event` (the inbox id `events show` takes), `run` (None when ignored), `status` (created,
    duplicate or ignored); then the details, and the older names `inboxId`/`runId`."""
    from flowjobs.webhooks.replay import DryRun

    dry = isinstance(result, DryRun)
    ingested = result.ingested if dry else result
    status = (
        "duplicate"
        if ingested.duplicate
        else "ignored"
        if ingested.status == "ignored"
        else "created"
    )
    return {
        "event": ingested.inbox_id,
        "run": ingested.run_id,
        "status": status,
        "task": ingested.task,
        "signature": ingested.signature,
        "detail": ingested.detail or None,
        "dryRun": dry,
        "result": result.result if dry else None,
        "changes": result.changes if dry else [],
        "handlerNotRun": result.not_run if dry else None,
        "inboxId": ingested.inbox_id,
        "runId": ingested.run_id,
        "duplicate": ingested.duplicate,
        "inboxStatus": ingested.status,
    }


def _print(result, as_json: bool) -> None:
    from flowjobs.webhooks.replay import DryRun

    shown = outcome(result)
    if as_json:
        output.emit_json(shown)
        return
    ingested = result.ingested if isinstance(result, DryRun) else result
    if ingested.signature != "verified":
        output.note(f"note: replaying {ingested.signature} ({_detail(ingested)})")
    if isinstance(result, DryRun):
        typer.echo("dry run — nothing was stored, triggered, charged or sent")
        _print_changes(result)
        return
    # one line, whatever happened: RUN (or -), STATUS, EVENT; the why on stderr
    typer.echo(f"{shown['run'] or '-'}\t{shown['status']}\t{shown['event']}")
    if shown["status"] == "duplicate":
        output.note(
            f"note: seen before; {shown['run'] or shown['event']} has it (--force replays it again)"
        )
    elif shown["status"] == "ignored":
        output.note(f"note: {ingested.detail}")


def _detail(ingested) -> str:
    return {
        "unverified": "no signature came with it: a file without one, or fetched from Stripe's API",
        "missing": "no signature",
    }.get(ingested.signature, ingested.signature)


def _print_changes(result) -> None:
    if result.ingested.duplicate:
        typer.echo(
            f"duplicate of {result.ingested.run_id}: the handler would not run again (--force to replay)"
        )
    if result.not_run is not None:
        typer.echo(
            f"handler {result.ingested.task} not run: {result.not_run}; a worker started with "
            "this configuration fails it. The changes below are the event's and its run's only"
        )
    if result.result is not None:
        typer.echo(
            f"handler {result.ingested.task} returned: {json.dumps(result.result, default=str)}"
        )
    if not result.changes:
        typer.echo("no rows would change")
    for change in result.changes:
        typer.echo(f"{change['change']} {change['table']} {change['id']}")
        for column, (old, new) in change["columns"].items():
            typer.echo(f"    {column}: {old} → {new}")


def replay_event(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., help="A Stripe event (JSON), a Supabase webhook payload, or an `events export` file."
    ),
    source: str | None = typer.Option(
        None, "--source", metavar="SOURCE", help="stripe or supabase (default: detected)."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Run the handler in a rolled-back transaction; print the row changes.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replay an event seen before, as a new run linked to the first."
    ),
    require_signature: bool = typer.Option(
        False, "--require-signature", help="Refuse an event without a verified signature."
    ),
    allow_mode_mismatch: bool = typer.Option(
        False, "--allow-mode-mismatch", help="Process a live event in test mode, or the reverse."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print one JSON object {"event", "run", "status": "created|duplicate|ignored", task, '
        "signature, detail, dryRun, result, changes}.",
    ),
):
    """Store a webhook event from FILE in the inbox and trigger its handler.

    Prints one line, RUN<TAB>STATUS<TAB>EVENT, whatever happened: STATUS is created, duplicate
    (seen before: RUN is the first run) or ignored (no handler: RUN is -). Sample events are in
    examples/ (see docs/webhooks.md).
    """
    from flowjobs.webhooks.replay import read_incoming, replay

    one_of(source, EVENT_SOURCES, "--source")
    try:
        if str(file) != "-" and file.stat().st_size > MAX_FILE:
            raise BadInput(
                f"{file} is larger than {MAX_FILE // (1024 * 1024)} MB; not a webhook event"
            )
        body = sys.stdin.buffer.read(MAX_FILE + 1) if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {file}: {exc.strerror}") from None
    if len(body) > MAX_FILE:
        raise BadInput(
            f"the input is larger than {MAX_FILE // (1024 * 1024)} MB; not a webhook event"
        )
    name = "standard input" if str(file) == "-" else str(file)
    if not body.strip():
        raise BadInput(f"{name} is empty: expected a webhook event (JSON)")
    # the file is read and checked before the database is opened: a dry run stores nothing,
    # so it makes no database; a real one stores the event (as `trigger` stores a run) and
    # creates the database on first use, but not for a file it refuses
    incoming = read_incoming(ctx.obj.settings(), body, source, what=name)
    rt = ctx.obj.runtime(read_only=dry_run)
    result = replay(
        rt.billing,
        rt.settings,
        incoming,
        require_signature=require_signature,
        allow_mode_mismatch=allow_mode_mismatch,
        force=force,
        dry_run=dry_run,
    )
    _report(rt.settings, incoming, result, as_json, dry_run)


def _report(settings, incoming, result, as_json: bool, dry_run: bool) -> None:
    """What a replay did (`_print`), and a note when it handed a Stripe event to workers that,
    started with this configuration, could not call Stripe."""
    _print(result, as_json)
    if not dry_run and outcome(result)["status"] == "created":
        _note_missing_stripe_key(settings, incoming)


def _note_missing_stripe_key(settings, incoming) -> None:
    """A Stripe event handed to the workers while this configuration has no API key for its
    mode: a worker started with the same configuration fails the handlers that call Stripe
    (for good: a missing key is a configuration error, not retried; `events replay` them once
    the key is set), so say so now rather than let the run say it later."""
    if incoming.source != "stripe":
        return
    if settings.stripe.api_key(bool(incoming.livemode)):
        return
    mode = "live" if incoming.livemode else "test"
    output.note(
        f"note: no Stripe {mode}-mode API key in this configuration ([stripe] {mode}_api_key or "
        f"FLOWJOBS_STRIPE_{mode.upper()}_API_KEY): a worker started with it fails the handlers "
        "that call Stripe"
    )


@app.command("list")
def list_events(
    ctx: typer.Context,
    source: str | None = typer.Option(
        None,
        "--source",
        metavar="SOURCE",
        help="stripe or supabase.",
        autocompletion=completer(EVENT_SOURCES),
    ),
    type_: str | None = typer.Option(
        None, "--type", metavar="TYPE", help="e.g. payment_intent.succeeded or invoices:UPDATE."
    ),
    status: str | None = typer.Option(
        None,
        "--status",
        metavar="STATUS",
        help="received, routed, ignored or rejected.",
        autocompletion=completer(EVENT_STATUSES),
    ),
    limit: int = typer.Option(
        50, "--limit", metavar="N", min=1, max=10000, help="At most this many, newest first."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON array: {id, source, eventId, type, status, signature, runId, receivedAt, error}.",
    ),
):
    """Received events, newest first."""
    from flowjobs.webhooks.inbox import listing

    one_of(source, EVENT_SOURCES, "--source")
    one_of(status, EVENT_STATUSES, "--status")
    rows = listing(ctx.obj.runtime(read_only=True).billing, source, type_, status, limit)
    data = [_listed(r) for r in rows]
    output.listing(
        data,
        as_json,
        {
            "id": "id",
            "source": "source",
            "type": "type",
            "status": "status",
            "signature": "signature",
            "run": "runId",
            "received_at": "receivedAt",
        },
    )


@app.command("show")
def show(
    ctx: typer.Context,
    inbox_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object: the keys of `events list --json` (id, source, eventId, "
        "type, status, signature, runId, receivedAt, error), then signatureDetail, livemode, "
        "account, via, task, replayOf, dedupKey, headers and body (its text).",
    ),
):
    """One stored event: its metadata, headers and body."""
    import json

    from flowjobs.webhooks.inbox import load

    row = load(ctx.obj.runtime(read_only=True).billing, inbox_id)
    data = {  # the names and time format of `events list`, then the rest
        **_listed(row),
        "signatureDetail": row.signature_detail,
        "livemode": row.livemode,
        "account": row.account,
        "via": row.via,
        "task": row.task,
        "replayOf": row.replay_of,
        "dedupKey": row.dedup_key,
        "headers": row.headers,
        "body": row.body.decode("utf-8", "replace"),
    }
    if as_json:
        output.emit_json(data)
        return
    for key, value in data.items():
        if key != "body" and value is not None:
            shown = json.dumps(value) if isinstance(value, dict | bool) else value
            typer.echo(f"{key}: {shown}")
    typer.echo("body:")
    typer.echo(data["body"])


def _listed(r) -> dict:
    """An inbox row as `events list --json` prints it (and `events show` begins)."""
    from flowjobs.core.clock import iso_datetime

    return {
        "id": r.id,
        "source": r.source,
        "eventId": r.event_id,
        "type": r.type,
        "status": r.status,
        "signature": r.signature,
        "runId": r.run_id,
        "receivedAt": iso_datetime(r.received_at),
        "error": r.error,
    }


@app.command("replay")
def replay_stored(
    ctx: typer.Context,
    inbox_id: str = typer.Argument(..., metavar="ID"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show the row changes; store and run nothing."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print one JSON object {"event", "run", "status": "created|duplicate|ignored", task, '
        "signature, detail, dryRun, result, changes}.",
    ),
):
    """Run a stored event's handler again, as a new run linked to the first (or --dry-run)."""
    from flowjobs.webhooks.inbox import load
    from flowjobs.webhooks.parse import parse
    from flowjobs.webhooks.replay import replay

    rt = ctx.obj.runtime(existing=True)  # the stored event must be there
    row = load(rt.billing, inbox_id)
    if row.status == "rejected":
        raise BadInput(
            f"{inbox_id} was rejected ({row.error}); it is kept for inspection, not replayed"
        )
    incoming = parse(row.source, row.body, row.headers)
    incoming.signature, incoming.signature_detail = row.signature, row.signature_detail
    result = replay(
        rt.billing,
        rt.settings,
        incoming,
        allow_mode_mismatch=True,
        force=True,
        dry_run=dry_run,
        via="replay",
    )
    _report(rt.settings, incoming, result, as_json, dry_run)


@app.command("fetch")
def fetch_missed(
    ctx: typer.Context,
    since: str = typer.Option(
        "24h",
        "--since",
        metavar="DURATION|TIME",
        help="Events created since then: 90m, 3d, or a time (2026-11-30T08:00Z). Stripe keeps "
        "events 30 days.",
    ),
    types: list[str] | None = typer.Option(
        None,
        "--type",
        metavar="TYPE",
        help="An event type (repeat it); default: every type flowjobs handles.",
    ),
    limit: int = typer.Option(
        1000, "--limit", metavar="N", min=1, help="At most this many events, oldest first."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the events and which are new to the inbox; store nothing."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON array of {eventId, type, object, created, status, run, detail}; status: "
        "created, duplicate, ignored, skipped (or, with --dry-run, new / in the inbox).",
    ),
):
    """Fetch Stripe events the inbox missed (an endpoint down past Stripe's retries) from
    Stripe's Events API and store and route them as if they had arrived; events already in the
    inbox are duplicates, so running it again, or over a longer window, runs nothing twice.
    Uses the API key of the configured mode ([stripe] mode)."""
    from flowjobs.core.clock import parse_since
    from flowjobs.webhooks.fetch import fetch, handled_types, list_events

    settings = ctx.obj.settings()
    live = settings.stripe.mode == "live"
    if not settings.stripe.api_key(live):  # before any database is made
        from flowjobs.adapters.stripe_gateway import NoStripeKey

        raise NoStripeKey(live)
    rt = ctx.obj.runtime(read_only=dry_run)
    start = output.parse_option(since, lambda v: parse_since(v, rt.clock.now_ms()), "--since")
    wanted = list(dict.fromkeys(types or handled_types()))
    for kind in wanted:
        if not kind or any(c.isspace() for c in kind):
            raise BadInput(f"--type {kind!r} is not an event type (e.g. payment_intent.succeeded)")
    events, more = list_events(rt.billing, live, wanted, start // 1000, limit)
    done = fetch(rt.billing, rt.settings, events, dry_run=dry_run)
    if as_json:
        output.emit_json([item.as_dict() for item in done])
    else:
        output.table(
            ["eventId", "type", "object", "status", "run", "detail"],
            [[i.event_id, i.type, i.object, i.status, i.run, i.detail] for i in done],
        )
    counts: dict[str, int] = {}
    for item in done:
        counts[item.status] = counts.get(item.status, 0) + 1
    said = ", ".join(f"{n} {status}" for status, n in counts.items()) or "none"
    output.note(f"{len(done)} Stripe event{'s' if len(done) != 1 else ''} since {since}: {said}")
    if more and done:
        last = done[-1].created
        from datetime import UTC, datetime

        at = datetime.fromtimestamp(last, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        output.note(
            f"more than --limit {limit} matched; these were the oldest: run it again with "
            f"--since {at} for the rest (events seen already are duplicates)"
        )
    if start < rt.clock.now_ms() - 30 * 86_400_000:
        output.note("Stripe keeps events 30 days: none older could be fetched")


@app.command("export")
def export(
    ctx: typer.Context,
    inbox_id: str = typer.Argument(..., metavar="ID"),
    out: Path | None = typer.Option(
        None, "-o", "--output", metavar="FILE", help="Write to this file (default: stdout)."
    ),
):
    """The stored raw body and headers, as a file `flowjobs replay-event` accepts (signature included)."""
    from flowjobs.webhooks.inbox import load
    from flowjobs.webhooks.parse import to_export

    text = (
        json.dumps(to_export(load(ctx.obj.runtime(read_only=True).billing, inbox_id)), indent=2)
        + "\n"
    )
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc.strerror}") from None
    output.note(f"wrote {out}")


@app.command("deliveries")
def deliveries(
    ctx: typer.Context,
    endpoint: str | None = typer.Option(
        None, "--endpoint", metavar="ENDPOINT_ID", help="Only deliveries to this endpoint."
    ),
    status: str | None = typer.Option(
        None,
        "--status",
        metavar="STATUS",
        help="pending, retrying, succeeded, failed or skipped.",
        autocompletion=completer(DELIVERY_STATUSES),
    ),
    event: str | None = typer.Option(
        None, "--event", metavar="EVENT_ID", help="Only deliveries of this event (event_…)."
    ),
    limit: int = typer.Option(
        50, "--limit", metavar="N", min=1, max=10000, help="At most this many, newest first."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON array: {id, eventId, eventType, endpointId, status, attempts, lastStatusCode, lastLatencyMs, runId, lastError, …}.",
    ),
):
    """Outbound webhook deliveries (Flowglad events to merchants' endpoints), newest first."""
    from flowjobs.outbound.views import delivery_rows

    one_of(status, DELIVERY_STATUSES, "--status")
    data = delivery_rows(ctx.obj.runtime(read_only=True).billing, endpoint, status, event, limit)
    output.listing(
        data,
        as_json,
        {
            "id": "id",
            "event": "eventId",
            "type": "eventType",
            "endpoint": "endpointId",
            "status": "status",
            "attempts": "attempts",
            "code": "lastStatusCode",
            "latency_ms": "lastLatencyMs",
            "run": "runId",
            "error": "lastError",
        },
    )


@app.command("redeliver")
def redeliver(
    ctx: typer.Context,
    event_id: str = typer.Argument(..., metavar="EVENT_ID"),
    endpoint: str | None = typer.Option(
        None,
        "--endpoint",
        metavar="ENDPOINT_ID",
        help="Only to this endpoint (default: all of the event's).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON array: {runId, endpointId, deliveryId} per endpoint."
    ),
):
    """Deliver a Flowglad event again (a new run per endpoint, the same webhook-id); prints the runs."""
    from flowjobs.outbound.dispatch import redeliver as schedule_again

    rt = ctx.obj.runtime(existing=True)  # the event and its deliveries must be there
    done = schedule_again(rt.billing, rt.settings.webhooks.outbound, event_id, endpoint)
    if as_json:
        output.emit_json(done)
        return
    for d in done:
        typer.echo(f"{d['runId']}\t{d['endpointId']}\t{d['deliveryId']}")


def register(root: typer.Typer) -> None:
    root.command("replay-event")(replay_event)
    root.add_typer(app, name="events")
