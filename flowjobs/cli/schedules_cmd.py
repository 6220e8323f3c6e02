"""`flowjobs schedules …`, `flowjobs tick`, `flowjobs run-scheduler`."""

from __future__ import annotations

import json

import typer

from flowjobs.cli import output
from flowjobs.cli.filters import complete_schedules
from flowjobs.errors import BadInput, ExitStatus


def schedule_argument():
    return typer.Argument(
        ...,
        metavar="SCHEDULE_ID",
        help="A schedule id (see `flowjobs schedules list`).",
        autocompletion=complete_schedules,
    )


app = typer.Typer(
    help="Cron schedules: list, preview, backfill, enable/disable, trigger, health.",
    no_args_is_help=True,
)


BACKFILL_ASK = 10_000  # slots a backfill enqueues without --yes


def _time(value: str | None, option: str, default: int) -> int:
    from flowjobs.core.clock import parse_iso

    parsed = output.parse_option(value, parse_iso, option)
    return default if parsed is None else parsed


PREVIEW_MAX = 1000  # slots one `schedules preview` prints


def _scheduler(ctx, read_only: bool = False, existing: bool = False):
    # the configuration's schedules first: a broken one is exit 2 naming it, even where there
    # is no database yet (it said "no database at …", exit 4, until something made one)
    ctx.obj.runtime().schedules  # noqa: B018
    return ctx.obj.runtime(read_only=read_only, existing=existing).scheduler


def _known(ctx, schedule_id: str) -> None:
    """An unknown schedule is refused before the database is opened (or made)."""
    from flowjobs.core.scheduler import find

    find(ctx.obj.runtime().schedules, schedule_id)


@app.command("list")
def list_schedules(
    ctx: typer.Context,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON array: {id, task, cron, timezone, catchup, max_catchup, enabled, enabled_override, last_slot, next_slots, fired_as}.",
    ),
):
    """Every schedule: task, cron, timezone, catch-up policy, enabled (and whether `schedules
    enable|disable` set it, overriding `enabled` in flowjobs.toml), last slot (the latest one
    handled: enqueued, or passed over when the schedule was first seen or by its catch-up
    policy), next 3 slots; and a note for each schedule the running schedulers still fire as
    it was before flowjobs.toml was edited (`fired_as`: restart them)."""
    rows = _scheduler(ctx, read_only=True).describe()
    if as_json:
        output.emit_json(rows)
        return
    if not rows:
        output.note(
            'no schedules: declare one with @task(..., cron="0 * * * *") or a '
            "[schedules.<id>] table in flowjobs.toml (see docs/scheduling.md)"
        )
        return
    output.table(
        ["id", "task", "cron", "timezone", "catchup", "enabled", "last_slot", "next_slots"],
        [
            [
                r["id"],
                r["task"],
                r["cron"],
                r["timezone"],
                r["catchup"],
                ("yes" if r["enabled"] else "no")
                + (
                    ""
                    if r["enabled_override"] is None
                    else f" (schedules {'enable' if r['enabled_override'] else 'disable'})"
                ),
                r["last_slot"],
                " ".join(r["next_slots"]),
            ]
            for r in rows
        ],
    )
    _note_fired_as(rows)


def _note_fired_as(rows: list[dict]) -> None:
    for r in rows:
        fired = r["fired_as"]
        if fired:
            changes = ", ".join(
                f"{key} {json.dumps(theirs)} (here: {json.dumps(ours)})"
                for key, (theirs, ours) in fired["changed"].items()
            )
            then = (
                "this configuration is older and is not fired: bring it up to date"
                if fired["superseded"]
                else "this configuration is newer: it is fired once a worker or scheduler "
                "started with it ticks (restart them)"
            )
            output.note(
                f"{r['id']}: the schedulers fire it as a configuration written at "
                f"{fired['since']} defines it: {changes}; {then}"
            )


@app.command("preview")
def preview(
    ctx: typer.Context,
    schedule_id: str = schedule_argument(),
    start: str | None = typer.Option(
        None, "--from", metavar="TIME", help="ISO-8601 (default: now)."
    ),
    end: str | None = typer.Option(
        None, "--to", metavar="TIME", help="ISO-8601 (default: one day after --from)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON array: {lastTimestamp, timestamp, key} per slot."
    ),
):
    """Each slot in (--from, --to] with the window (lastTimestamp -> timestamp) its run would
    get; at most the first PREVIEW_MAX (1,000), and then a note says where it stopped."""
    sched = _scheduler(ctx, read_only=True)
    begin = _time(start, "--from", ctx.obj.runtime().clock.now_ms())
    finish = _time(end, "--to", begin + 86400_000)
    if finish <= begin:
        raise BadInput("--to must be after --from")
    rows = sched.preview(schedule_id, begin, finish, limit=PREVIEW_MAX + 1)
    if len(rows) > PREVIEW_MAX:  # it stopped there without a word
        rows = rows[:PREVIEW_MAX]
        output.note(
            f"showing the first {PREVIEW_MAX:,} slots, up to {rows[-1]['timestamp']}; more follow "
            f"before --to: preview from --from {rows[-1]['timestamp']} for the next ones"
        )
    if as_json:
        output.emit_json(rows)
        return
    output.table(
        ["lastTimestamp", "timestamp", "key"],
        [[r["lastTimestamp"], r["timestamp"], r["key"]] for r in rows],
    )


@app.command("backfill")
def backfill(
    ctx: typer.Context,
    schedule_id: str = schedule_argument(),
    start: str = typer.Option(
        ..., "--from", metavar="TIME", help="ISO-8601; slots after this time."
    ),
    end: str = typer.Option(..., "--to", metavar="TIME", help="ISO-8601; slots up to this time."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report, enqueue nothing."),
    yes: bool = typer.Option(
        False,
        "--yes",
        help=f"Enqueue more than {BACKFILL_ASK:,} slots (a typo in a year is many runs).",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object: {schedule, slots, new, existing, dry_run, run_ids}.",
    ),
):
    """Enqueue every slot in (--from, --to] that has no run yet (slots that have passed)."""
    from flowjobs.core.clock import iso

    begin, finish = _time(start, "--from", 0), _time(end, "--to", 0)
    if finish <= begin:
        raise BadInput("--to must be after --from")
    _known(ctx, schedule_id)
    rt = ctx.obj.runtime(read_only=dry_run)
    now = rt.clock.now_ms()
    if finish > now:  # those runs would wait till their slots, and the scheduler fire them too
        raise BadInput(
            f"--to {iso(finish)} is later than now ({iso(now)}): a backfill enqueues slots that "
            "have passed; the scheduler fires the others as they come"
        )
    scheduler = rt.scheduler
    schedule = scheduler.get(schedule_id)
    slots = scheduler.backfill_slots(schedule_id, begin, finish)
    total = len(slots)
    if total > BACKFILL_ASK and not (yes or dry_run):
        raise BadInput(
            f"(--from, --to] holds {total:,} slots of {schedule_id}, each a run of "
            f"{schedule.task}: add --yes to enqueue them (--dry-run says how many have a run "
            "already)"
        )
    with output.progress(total, f"backfilling {schedule_id}") as advance:
        report = scheduler.backfill(
            schedule_id, begin, finish, dry_run=dry_run, progress=advance, slots=slots
        )
    if as_json:
        output.emit_json(report)
        return
    verb = "would enqueue" if dry_run else "enqueued"
    typer.echo(
        f"{report['schedule']}: {report['slots']} slots, {verb} {report['new']}, "
        f"{report['existing']} already had a run"
    )


@app.command("enable")
def enable(ctx: typer.Context, schedule_id: str = schedule_argument()):
    """Enable a schedule (stored in the database; overrides `enabled` in flowjobs.toml)."""
    _scheduler(ctx, existing=True).set_enabled(schedule_id, True)
    typer.echo(f"enabled {schedule_id}")


@app.command("disable")
def disable(ctx: typer.Context, schedule_id: str = schedule_argument()):
    """Disable a schedule (stored in the database; overrides `enabled` in flowjobs.toml)."""
    # the override lives in the database: written to a new one, the schedule would stay enabled
    _scheduler(ctx, existing=True).set_enabled(schedule_id, False)
    typer.echo(f"disabled {schedule_id}")


@app.command("trigger")
def trigger_now(
    ctx: typer.Context,
    schedule_id: str = schedule_argument(),
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="TIME",
        help="ISO-8601 start of the run's window (default: the end of the last covered window).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object: {id, task, status, deduplicated}."
    ),
):
    """Run a schedule's task now, as a manual run (not as a slot); its window ends now."""
    start = _time(since, "--since", 0) if since is not None else None
    _known(ctx, schedule_id)
    run = _scheduler(ctx).trigger_now(schedule_id, since=start)
    if as_json:
        output.emit_json(
            {"id": run.id, "task": run.task, "status": run.status, "deduplicated": run.deduplicated}
        )
    else:
        typer.echo(run.id)


@app.command("health")
def health(
    ctx: typer.Context,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON array: per schedule {id, slots, ran, queued, missing, duplicated, failed, lost, status, …}.",
    ),
):
    """Over the last day: slots that ran (their run started, or ended), queued (their run
    waits for a worker: not counted as ran), missing, run more than once (must be 0), failed,
    and windows lost (time no succeeded run covered) with their fix; status ok, recovering,
    lost, paused, superseded (a newer configuration fires it) or stalled (no process fires the
    newest definition). Exit 1 while a window is lost and no coming slot will cover it, or
    stalled."""
    rows = _scheduler(ctx, read_only=True).health()
    if as_json:
        output.emit_json(rows)
    else:
        output.table(
            ["id", "slots", "ran", "queued", "missing", "duplicated", "failed", "status"],
            [
                [
                    r["id"],
                    r["slots"],
                    r["ran"],
                    len(r["queued"]),
                    len(r["missing"]),
                    len(r["duplicated"]),
                    len(r["failed"]),
                    r["status"],
                ]
                for r in rows
            ],
        )
        for r in rows:
            for gap in r["lost"]:
                then = (
                    f"the run of the next slot ({gap['covered_by']}) reaches back over it"
                    if gap["covered_by"]
                    else f"fix: {gap['fix']}"
                )
                output.note(
                    f"{r['id']}: window {gap['from']} -> {gap['to']} lost "
                    f"(run {', '.join(gap['runs'])} did not succeed); {then}"
                )
        _note_fired_as(rows)
    for r in rows:
        if r["status"] == "stalled":
            output.note(f"{r['id']}: stalled: {r['fix']}")
    if any(r["status"] in ("lost", "stalled") for r in rows):
        raise typer.Exit(int(ExitStatus.FAILURE))


def tick(
    ctx: typer.Context,
    now: str | None = typer.Option(
        None,
        "--now",
        metavar="TIME",
        help="Tick as of this ISO-8601 time, not later than now (default: now).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON array: {schedule, slots, runs} per schedule that fired."
    ),
):
    """Enqueue every due slot of every enabled schedule, then exit (for cron or a systemd timer)."""
    from flowjobs.core.clock import iso
    from flowjobs.core.scheduler import raise_enqueue_failures

    rt = ctx.obj.runtime()
    current = rt.clock.now_ms()
    at = _time(now, "--now", current)
    if at > current:  # it would mark the slots up to then as done, their runs waiting till then
        raise BadInput(
            f"--now {iso(at)} is later than now ({iso(current)}): a tick then would count "
            "every slot up to it as done, and their runs would wait until then; give the "
            "current time or an earlier one (`schedules preview` shows what a time would fire)"
        )
    scheduler = rt.scheduler
    results = scheduler.tick(at)

    if as_json:
        output.emit_json(
            [
                {"schedule": r.schedule, "slots": [iso(s) for s in r.slots], "runs": r.run_ids}
                for r in results
            ]
        )
    else:
        for r in results:
            for slot, run_id in zip(r.slots, r.run_ids):
                typer.echo(f"{r.schedule}\t{iso(slot)}\t{run_id}")
    raise_enqueue_failures(scheduler.failures)


def run_scheduler(ctx: typer.Context):
    """Run only the scheduler loop (and the pruner) until SIGTERM/SIGINT; no tasks are executed.
    Exits 1 at once when a schedule fails to enqueue for a reason other than the database (a
    database outage is waited out, tick after tick), and 1 if stopped while one still fails."""
    from flowjobs.cli.signals import on_signals

    ctx.obj.runtime().run_scheduler(on_start=lambda stop: on_signals(lambda _signum: stop()))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="schedules")
    root.command("tick")(tick)
    root.command("run-scheduler")(run_scheduler)
