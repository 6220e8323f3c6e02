"""`flowjobs workers`: the worker processes that are alive, and those seen lately."""

from __future__ import annotations

import typer

from flowjobs.cli import output


def workers(
    ctx: typer.Context,
    since: str = typer.Option(
        "24h",
        "--since",
        metavar="DURATION",
        help="Also list workers that stopped or were lost this long ago.",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON array: one object per worker (id, host, pid, version, queues, "
        "concurrency, started_at, heartbeat_at, in_flight, processed, stopped_at, state).",
    ),
):
    """List worker processes: alive, stopped (clean exit) or lost (no heartbeat, no exit)."""
    from flowjobs.core.clock import iso
    from flowjobs.durations import parse_duration
    from flowjobs.ops import workers as presence

    window = output.parse_option(since, parse_duration, "--since")
    rt = ctx.obj.runtime(read_only=True)
    now = rt.clock.now_ms()
    rows = presence.report(rt.store, now, int(window * 1000))
    if as_json:  # times as every other command's JSON writes them
        stamps = ("started_at", "heartbeat_at", "stopped_at")
        output.emit_json(
            [
                {**w, **{k: iso(w[k]) if w.get(k) is not None else None for k in stamps}}
                for w in rows
            ]
        )
        return
    if not rows:
        output.note(f"no worker has been seen in the last {since} (start one: flowjobs run-worker)")
        return
    output.table(
        ["id", "state", "queues", "concurrency", "in flight", "processed", "started", "heartbeat"],
        [
            [
                w["id"],
                w["state"],
                w["queues"],
                w["concurrency"],
                w["in_flight"],
                w["processed"],
                iso(w["started_at"]),
                f"{max(0, now - w['heartbeat_at']) // 1000}s ago",
            ]
            for w in rows
        ],
    )


def register(app: typer.Typer) -> None:
    app.command("workers")(workers)
