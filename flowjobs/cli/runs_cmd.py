"""`flowjobs runs list|show|cancel|replay`."""

from __future__ import annotations

import json

import typer

from flowjobs.cli import output
from flowjobs.cli.filters import RUN_STATUSES, complete_tasks, completer, one_of
from flowjobs.cli.views import (
    DEFAULT_RUN_COLUMNS,
    RUN_COLUMNS,
    WATCH_COLUMNS,
    run_cells,
    run_columns,
    run_detail,
    run_summary,
)
from flowjobs.core.clock import iso
from flowjobs.errors import BadInput, ExitStatus, NotFound
from flowjobs.store.states import TERMINAL

app = typer.Typer(help="Inspect, cancel and replay runs.", no_args_is_help=True)

STATUSES = RUN_STATUSES
ERROR_STATUSES = ("retrying", "failed", "canceled", "expired")  # runs that end with an error


def _task_filter(rt, task: str | None) -> str | None:
    """A --task filter: a registered task, or one that has runs here (a task since removed);
    anything else is a typo, answered with the closest task ids (exit 2)."""
    from flowjobs.cli.filters import check_task
    from flowjobs.errors import UnknownTask

    try:
        return check_task(rt, task)
    except UnknownTask:
        if rt.store.list_runs(task=task, limit=1):
            return task
        raise


def _get(store, run_id: str) -> dict:
    row = store.get_run(run_id)
    if row is None:
        raise NotFound(f"no run {run_id!r}")
    return row


@app.command("list")
def list_runs(
    ctx: typer.Context,
    status: str | None = typer.Option(
        None,
        "--status",
        "-s",
        metavar="STATUS",
        help=f"Only runs in this status: {', '.join(STATUSES)}.",
        autocompletion=completer(STATUSES),
    ),
    task: str | None = typer.Option(
        None,
        "--task",
        "-t",
        metavar="TASK",
        help="Only runs of this task.",
        autocompletion=complete_tasks,
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="DURATION|TIME",
        help="Only runs created since then: a duration back from now (90m, 2d) or an ISO-8601 "
        "time.",
    ),
    limit: int = typer.Option(
        50, "--limit", "-l", metavar="N", min=1, max=10000, help="At most this many, newest first."
    ),
    columns: str | None = typer.Option(
        None,
        "--columns",
        metavar="A,B,…",
        help=f"The table's columns, in order: {', '.join(RUN_COLUMNS)} "
        f"(default: {','.join(DEFAULT_RUN_COLUMNS)}).",
    ),
    wide: bool = typer.Option(
        False,
        "--wide",
        "-w",
        help="Every column at its full width and whole errors, wider than the terminal if need be.",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON array of runs: {id, task, status, attempts, queue, created_at, "
        "started_at, finished_at, error}.",
    ),
):
    """List runs, newest first. On a terminal the table fits its width: ids, task names and
    times are never cut; when not all fit, columns are left out, those that could wrap (error,
    attempts, queue) first, rightmost first (the caption names them); with --status failed,
    retrying, canceled or expired the error stays longest — choose them with
    --columns, or see all with --wide. Piped, rows are tab-separated lines with whole errors.
    """
    one_of(status, STATUSES, "--status")
    shown = run_columns(columns)
    rt = ctx.obj.runtime(read_only=True)
    from flowjobs.core.clock import parse_since

    start = output.parse_option(since, lambda v: parse_since(v, rt.clock.now_ms()), "--since")
    task = _task_filter(rt, task)
    found = rt.store.list_runs(status=status, task=task, limit=limit + 1, since=start)
    rows = [run_summary(r) for r in found[:limit]]
    if len(found) > limit:  # it cut the list at 50 without a word
        output.note(
            f"showing the newest {limit:,} {'run' if limit == 1 else 'runs'}; more match: --limit N for more, or narrow "
            "with --status, --task or --since"
        )
    if as_json:
        output.emit_json(rows)
        return
    whole = wide or not output.is_tty()  # piped: whole errors, one line each (see output.table)
    output.table(
        shown,
        [run_cells(r, shown, whole) for r in rows],
        wide=wide,
        hint="choose them with --columns, or see all with --wide or --json",
        # a listing of failures is read for its errors: they go after the times, not before
        keep_longest=("error",) if status in ERROR_STATUSES else (),
    )


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: str,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object {id, task, status, …every column, payload, result, attempts, logs, children, replays}.",
    ),
):
    """Show a run: payload, attempts (with tracebacks), log lines, result."""
    store = ctx.obj.runtime(read_only=True).store
    row = _get(store, run_id)
    detail = run_detail(
        row,
        store.attempts(run_id),
        store.logs(run_id),
        store.list_runs(parent_id=run_id),
        store.replays([run_id]).get(run_id, []),
    )
    if as_json:
        output.emit_json(detail)
        return
    _render(detail)


def _render(d: dict) -> None:
    echo = typer.echo
    echo(f"{d['id']}  {d['task']}  {d['status']}")
    for key in (
        "queue",
        "priority",
        "created_at",
        "run_at",
        "started_at",
        "finished_at",
        "worker",
        "idempotency_key",
        "parent_id",
        "replay_of",
        "error",
    ):
        if d.get(key) not in (None, ""):
            echo(f"  {key}: {_continued(d[key], 4)}")
    crashes = d.get("crashes") or 0
    used = d["attempt"] - crashes  # a crash (a worker lost) uses the crash budget, not attempts
    echo(
        f"  attempts: {used} of {d['max_attempts']} used"
        + (f", and {crashes} lost to crashes (not counted)" if crashes else "")
    )
    echo("payload:")
    echo("  " + json.dumps(d["payload"], indent=2).replace("\n", "\n  "))
    for a in d["attempts"]:
        echo(
            f"attempt {a['number']}: {a['outcome']} on {a['worker']} at {a['started_at']} "
            f"({a['duration_ms']} ms){': ' + _continued(a['error'], 2) if a['error'] else ''}"
        )
        if a["traceback"]:
            echo("  " + a["traceback"].rstrip().replace("\n", "\n  "))
    if d["logs"]:
        echo("logs:")
        for line in d["logs"]:
            message = _continued(line["message"], 4)
            echo(f"  {line['at']} [{line['level']}] #{line['attempt']} {message}")
    if d["children"]:
        echo("children: " + ", ".join(d["children"]))
    if d["replays"]:
        echo("replays: " + ", ".join(d["replays"]))
    if d["result"] is not None:
        echo("result:")
        echo("  " + json.dumps(d["result"], indent=2).replace("\n", "\n  "))


def _continued(value, indent: int) -> str:
    """A value's later lines indented under its first (an error message of several lines)."""
    return str(value).rstrip("\n").replace("\n", "\n" + " " * indent)


@app.command("cancel")
def cancel(ctx: typer.Context, run_id: str):
    """Cancel a run: a waiting run at once; an executing run at its worker's next heartbeat,
    which tells the task to stop (ctx.canceled: a task that never checks it runs on, its result
    discarded); at once when that worker is gone (its lease ran out)."""
    rt = ctx.obj.runtime(existing=True)
    outcome = rt.store.cancel(run_id, rt.clock.now_ms())
    if outcome == "missing":
        raise NotFound(f"no run {run_id!r}")
    if outcome == "canceled":
        typer.echo(f"canceled {run_id}")
    elif outcome == "requested":
        row = rt.store.get_run(run_id) or {}
        lease = row.get("lease_expires_at")
        gone = (
            f"; should worker {row.get('worker')} be gone, the run ends when its lease runs out "
            f"({iso(lease)})"
            if lease
            else ""
        )
        typer.echo(
            f"cancel requested for {run_id}; it ends canceled at its worker's next heartbeat, "
            f"which tells the task to stop (ctx.canceled){gone}"
        )
    elif outcome == "abandoned":
        typer.echo(
            f"canceled {run_id}: it was executing on a worker whose lease ran out (the worker "
            "died or stopped), so its attempt is recorded as crashed"
        )
    else:
        output.note(f"error: run {run_id} is {outcome}; nothing to cancel")
        raise typer.Exit(int(ExitStatus.FAILURE))


@app.command("replay")
def replay(
    ctx: typer.Context,
    run_ids: list[str] | None = typer.Argument(
        None, metavar="[RUN_ID]...", help="Runs to replay; none: select with --status [--task]."
    ),
    status: str | None = typer.Option(
        None,
        "--status",
        "-s",
        metavar="STATUS",
        help=f"Replay the runs in this status: {', '.join(STATUSES)}.",
        autocompletion=completer(STATUSES),
    ),
    task: str | None = typer.Option(
        None,
        "--task",
        "-t",
        metavar="TASK",
        help="Only runs of this task (narrows --status, which it needs).",
        autocompletion=complete_tasks,
    ),
    limit: int = typer.Option(
        100,
        "--limit",
        "-l",
        metavar="N",
        min=1,
        max=100000,
        help="At most this many (newest first); it says when more match.",
    ),
    include_replayed: bool = typer.Option(
        False,
        "--include-replayed",
        help="With --status: replay runs that have a replay already too (they are skipped: "
        "running the same command twice makes no second copies).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the runs it would replay (one id per line); replay none."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replay runs that have not ended too (queued, executing, retrying …): their task "
        "then runs twice.",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print JSON {id, task, status, replay_of}: one object for one RUN_ID, else an "
        "array ({replay_of, task} with --dry-run).",
    ),
):
    """New runs with the same task and payload, each linked to its original (one id per line).

    With --status, a run that was replayed before is skipped (a failed replay is itself a failed
    run, and is replayed in its turn): each failure is replayed once, however often the command
    runs. Named RUN_IDs are replayed whatever they had before.
    """
    if run_ids and (status or task):
        raise BadInput("give run ids or --status/--task, not both")
    if not run_ids and not status:
        raise BadInput(
            "name the runs to replay: RUN_ID..., or --status failed [--task T]"
            + (
                " (--task narrows --status; alone it would replay every run of the task)"
                if task
                else ""
            )
        )
    one_of(status, STATUSES, "--status")
    rt = ctx.obj.runtime(existing=True)
    task = _task_filter(rt, task)
    skipped, more = 0, False
    if run_ids:
        rows = [_get(rt.store, run_id) for run_id in run_ids]
    else:
        unreplayed = None if include_replayed else False
        rows = rt.store.list_runs(status=status, task=task, limit=limit + 1, replayed=unreplayed)
        more, rows = len(rows) > limit, rows[:limit]
        if not include_replayed:
            skipped = rt.store.count_runs(status=status, task=task, replayed=True)
    live = [row for row in rows if row["status"] not in TERMINAL]
    if live and not force:
        first = live[0]
        raise BadInput(
            f"run {first['id']} is {first['status']}, not ended"
            + (f" (and {len(live) - 1} more)" if len(live) > 1 else "")
            + ": a replay would run its task a second time beside it; wait for it to end, "
            "cancel it first (`flowjobs runs cancel RUN_ID`), or replay it anyway with --force"
        )
    if dry_run:
        if as_json:
            output.emit_json([{"replay_of": row["id"], "task": row["task"]} for row in rows])
        else:
            for row in rows:
                typer.echo(row["id"])
        _replay_notes(len(rows), skipped, more, limit, "would replay", run_ids, include_replayed)
        return
    replayed = []
    with output.progress(len(rows), "replaying") as advance:
        for row in rows:
            result = rt.client.replay(row, once=not (run_ids or include_replayed))
            replayed.append(
                {
                    "id": result.id,
                    "task": result.task,
                    "status": result.status,
                    "replay_of": row["id"],
                }
            )
            advance()
    if as_json:
        output.emit_json(replayed[0] if run_ids and len(run_ids) == 1 else replayed)
        return
    for item in replayed:
        typer.echo(item["id"])
    _replay_notes(len(replayed), skipped, more, limit, "replayed", run_ids, include_replayed)


def _replay_notes(
    count: int, skipped: int, more: bool, limit: int, verb: str, run_ids, again: bool
) -> None:
    if run_ids and verb == "replayed":
        return  # the ids printed say it all
    output.note(f"{verb} {count} run{'' if count == 1 else 's'}")
    if skipped:
        output.note(
            f"skipped {skipped} already replayed (`runs show RUN_ID` lists a run's replays; "
            "--include-replayed replays them again)"
        )
    if more:
        how = (
            "raise --limit"
            if again or verb != "replayed"
            else "run it again (what it replayed is skipped), or raise --limit"
        )
        output.note(f"more runs match than --limit {limit}: {how}")


@app.command("watch")
def watch_runs(
    ctx: typer.Context,
    interval: float = typer.Option(
        1.0, "--interval", metavar="SECONDS", min=0.2, max=60, help="Seconds between redraws."
    ),
    limit: int = typer.Option(
        20, "--limit", "-l", metavar="N", min=1, max=500, help="Newest runs shown."
    ),
    once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
    columns: str | None = typer.Option(
        None,
        "--columns",
        metavar="A,B,…",
        help=f"The runs table's columns, in order: {', '.join(RUN_COLUMNS)} "
        f"(default: {','.join(WATCH_COLUMNS)}).",
    ),
):
    """A live view of queue depths and the newest runs (Ctrl-C to leave). Ids, task names and
    times are never cut at any width: other columns are left out first (choose with --columns).
    Piped, one frame: queues, runs by status and the newest runs as tab-separated tables."""
    from flowjobs.cli.watch import watch

    shown = run_columns(columns, WATCH_COLUMNS)
    try:
        watch(ctx.obj.runtime(read_only=True), interval, limit, once, shown)
    except KeyboardInterrupt:
        pass
