"""`flowjobs trigger TASK_ID`: create one run, optionally wait for it to end.

Shortcuts name a billing object instead of a task and payload:
`flowjobs trigger billing-run BILLING_RUN_ID` triggers `attempt-billing-run` for it, keyed
`attempt-billing-run:<id>` like every other path to that billing run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from flowjobs.cli import output
from flowjobs.errors import BadInput, ExitStatus

TERMINAL = ("completed", "failed", "canceled", "expired")


def _read_payload(payload: str | None, payload_file: Path | None):
    if payload is not None and payload_file is not None:
        raise BadInput("give --payload or --payload-file, not both")
    if payload_file is not None:
        try:
            payload = payload_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"--payload-file: cannot read {payload_file}: {exc.strerror}") from None
    if payload is None:
        return {}
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise BadInput(f"payload is not valid JSON: {exc}") from None


def _duration(value: str | None, option: str) -> float | None:
    from flowjobs.durations import parse_duration

    return output.parse_option(value, parse_duration, option)


def wait_for(store, run_id: str, timeout: float | None) -> str | None:
    """Poll until the run ends; returns its status, or None on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.01
    while True:
        status = store.run_status(run_id)
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)


SHORTCUTS = {"billing-run": ("attempt-billing-run", "billingRunId")}


def _shortcut(rt, name: str, object_id: str | None, payload: dict, key: str | None):
    """(task, payload, idempotency key) for `trigger billing-run ID`; refuses what cannot run."""
    from flowjobs.billing.views import billing_run_status

    task, field = SHORTCUTS[name]
    if not object_id:
        raise BadInput(f"`trigger {name}` needs the id, e.g. flowjobs trigger {name} billing_run_…")
    if payload:
        raise BadInput(f"`trigger {name} ID` takes no --payload")
    status = billing_run_status(rt.billing, object_id)
    if status != "scheduled":
        raise BadInput(f"billing run {object_id} is {status}; only scheduled billing runs are executed")
    return task, {field: object_id}, key or f"{task}:{object_id}"


def trigger(
    ctx: typer.Context,
    task_id: str = typer.Argument(..., help="Task id, e.g. hello-world (see `flowjobs tasks list`), or billing-run."),
    object_id: Optional[str] = typer.Argument(None, metavar="[ID]", help="With billing-run: the billing run's id."),
    payload: Optional[str] = typer.Option(None, "--payload", "-p", help="Payload as a JSON object."),
    payload_file: Optional[Path] = typer.Option(None, "--payload-file", help="Read the payload JSON from a file."),
    idempotency_key: Optional[str] = typer.Option(None, "--idempotency-key", help="A second trigger with this key returns the same run."),
    idempotency_key_ttl: Optional[str] = typer.Option(None, "--idempotency-key-ttl", help="How long the key holds, e.g. 1d (default [run] idempotency_key_ttl)."),
    delay: Optional[str] = typer.Option(None, "--delay", help="Run no earlier than this from now, e.g. 30s."),
    priority: int = typer.Option(0, "--priority", help="Lower runs first (default 0)."),
    queue: Optional[str] = typer.Option(None, "--queue", help="Queue (default: the task's)."),
    wait: bool = typer.Option(False, "--wait", help="Block until the run ends: exit 0 if completed, 1 otherwise."),
    timeout: Optional[str] = typer.Option(None, "--timeout", help="With --wait: give up after this long (exit 124)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object {id, task, status, deduplicated}."),
):
    """Trigger a run of TASK_ID and print its run id."""
    body = _read_payload(payload, payload_file)
    ttl = _duration(idempotency_key_ttl, "--idempotency-key-ttl")
    delay_s = _duration(delay, "--delay")
    wait_s = _duration(timeout, "--timeout")
    if timeout is not None and not wait:
        raise BadInput("--timeout only makes sense with --wait")
    rt = ctx.obj.runtime()
    if task_id in SHORTCUTS:
        task_id, body, idempotency_key = _shortcut(rt, task_id, object_id, body, idempotency_key)
    elif object_id is not None:
        raise BadInput(f"unexpected argument {object_id!r}: task payloads go in --payload")
    result = rt.trigger(task_id, body, idempotency_key=idempotency_key, idempotency_key_ttl=ttl,
                        delay=delay_s, priority=priority, queue=queue)
    status = result.status
    if wait:
        status = wait_for(rt.store, result.id, wait_s)
    if as_json:
        output.emit_json({"id": result.id, "task": result.task, "status": status or "executing",
                          "deduplicated": result.deduplicated})
    else:
        typer.echo(result.id)
        if result.deduplicated:
            output.note(f"deduplicated: run {result.id} already holds this idempotency key")
    if wait and status is None:
        output.note(f"gave up waiting for {result.id} after {timeout}")
        raise typer.Exit(int(ExitStatus.WAIT_TIMEOUT))
    if wait and status != "completed":
        output.note(f"run {result.id} ended {status}")
        raise typer.Exit(int(ExitStatus.FAILURE))


def register(app: typer.Typer) -> None:
    app.command("trigger")(trigger)
