"""`flowjobs tasks list`."""

from __future__ import annotations

import typer

from flowjobs.cli import output
from flowjobs.durations import format_duration
from flowjobs.errors import ConfigError

app = typer.Typer(help="Registered tasks.", no_args_is_help=True)


@app.command("list")
def list_tasks(
    ctx: typer.Context,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON array: {id, queue, concurrency_limit, retry, timeout, cron, timezone, schedules, description}.",
    ),
):
    """Every registered task with its queue, retry policy, timeout and schedules (declared on
    it or configured in flowjobs.toml)."""
    rt = ctx.obj.runtime()
    tasks = rt.registry.all()  # a module that cannot be imported: one error, before any note
    rows = []
    on: dict[str, list[dict]] = {}  # a task's schedules as resolved (a configured one too)
    try:
        schedules = rt.schedules
    except ConfigError as exc:  # the list is how one finds the right task id: still shown
        output.note(f"schedules left out ({'; '.join(exc.problems)})")
        schedules = {}
    for s in schedules.values():
        on.setdefault(s.task, []).append(
            {"id": s.id, "cron": s.cron, "timezone": s.timezone, "enabled": s.enabled}
        )
    for t in tasks:
        policy = t.retry or rt.retry_defaults
        rows.append(
            {
                "id": t.id,
                "queue": t.queue,
                "concurrency_limit": t.concurrency_limit,
                "retry": {
                    "max_attempts": policy.max_attempts,
                    "min_wait": policy.min_wait,
                    "max_wait": policy.max_wait,
                    "factor": policy.factor,
                    "randomize": policy.randomize,
                },
                "timeout": format_duration(t.timeout or rt.settings.run.timeout),
                "cron": t.cron,
                "timezone": t.timezone if t.cron else None,
                "schedules": on.get(t.id, []),
                "description": t.description,
            }
        )
    if as_json:
        output.emit_json(rows)
        return
    output.table(
        ["id", "queue", "limit", "retry", "timeout", "schedule", "description"],
        [
            [
                r["id"],
                r["queue"],
                r["concurrency_limit"] or "",
                (t.retry or rt.retry_defaults).describe(),
                r["timeout"],
                "; ".join(
                    f"{s['cron']} {s['timezone']}"
                    + (f" ({s['id']})" if s["id"] != r["id"] else "")
                    + ("" if s["enabled"] else " disabled")
                    for s in r["schedules"]
                ),
                r["description"],
            ]
            for r, t in zip(rows, rt.registry.all())
        ],
    )
