"""`flowjobs trigger TASK_ID`: the typer command (help, errors); the work is in `triggering`."""

from __future__ import annotations

from pathlib import Path

import typer

from flowjobs.cli.filters import complete_tasks
from flowjobs.cli.triggering import run_trigger


def trigger(
    ctx: typer.Context,
    task_id: str = typer.Argument(
        ...,
        help="Task id, e.g. hello-world (see `flowjobs tasks list`), or billing-run.",
        autocompletion=complete_tasks,
    ),
    object_id: str | None = typer.Argument(
        None, metavar="[ID]", help="With billing-run: the billing run's id (charged now)."
    ),
    payload: str | None = typer.Option(
        None, "--payload", "-p", metavar="JSON", help="Payload as a JSON object."
    ),
    payload_file: Path | None = typer.Option(
        None, "--payload-file", metavar="FILE", help="Read the payload JSON from a file."
    ),
    idempotency_key: str | None = typer.Option(
        None,
        "--idempotency-key",
        metavar="KEY",
        help="A second trigger with this key returns the same run (at most 500 characters).",
    ),
    idempotency_key_ttl: str | None = typer.Option(
        None,
        "--idempotency-key-ttl",
        metavar="DURATION",
        help="How long the key holds, e.g. 1d (default [run] idempotency_key_ttl).",
    ),
    delay: str | None = typer.Option(
        None, "--delay", metavar="DURATION", help="Run no earlier than this from now, e.g. 30s."
    ),
    priority: int = typer.Option(0, "--priority", metavar="N", help="Lower runs first."),
    queue: str | None = typer.Option(
        None, "--queue", metavar="QUEUE", help="Queue (default: the task's)."
    ),
    wait: bool = typer.Option(
        False,
        "--wait",
        help="After printing the run id, block until the run ends: exit 0 if completed; "
        "else 1, with its error and last log lines on stderr. Ctrl-C leaves the run queued.",
    ),
    timeout: str | None = typer.Option(
        None,
        "--timeout",
        metavar="DURATION",
        help="With --wait: give up after this long (exit 124).",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object: {id, task, status, deduplicated}; with --wait also {result, error}.",
    ),
):
    """Trigger a run of TASK_ID and print its run id."""
    code = run_trigger(
        ctx.obj,
        task_id,
        object_id,
        payload,
        payload_file,
        idempotency_key,
        idempotency_key_ttl,
        delay,
        priority,
        queue,
        wait,
        timeout,
        as_json,
    )
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("trigger")(trigger)
