"""Filter values checked alike on every command: a `--status` or `--source` outside its known
set exits 2 listing the valid values, before any database is opened; an unknown task name gets
"did you mean …" (never the whole list of tasks)."""

from __future__ import annotations

import difflib

from flowjobs.errors import BadInput, UnknownTask
from flowjobs.store.states import ORDER

RUN_STATUSES = tuple(status.value for status in ORDER)
EVENT_SOURCES = ("stripe", "supabase")
EVENT_STATUSES = ("received", "routed", "ignored", "rejected")  # flowjobs.webhooks.models
DELIVERY_STATUSES = ("pending", "retrying", "succeeded", "failed", "skipped")  # outbound.models


def one_of(value: str | None, valid, option: str, elsewhere=None) -> str | None:
    """`value` when it is one of `valid` (or None); BadInput (exit 2) naming them otherwise,
    with the closest of them whatever the case (`FAILED`, `Fail`: 'failed'). A value in
    another case is refused all the same: values are written as listed, in every command.
    `elsewhere(folded value)`: where such a value does belong (another command), or None; said
    instead of the closest spelling, which would point the wrong way (`show price`: 'purchase')."""
    if value is None or value in valid:
        return value
    by_folded = {v.casefold(): v for v in valid}
    folded = value.casefold()
    there = elsewhere(folded) if elsewhere else None
    close = [] if there else difflib.get_close_matches(folded, list(by_folded), n=1)
    if not close and folded and not there:  # an abbreviation of exactly one (`sub`)
        starting = [v for v in by_folded if v.startswith(folded)]
        close = starting if len(starting) == 1 else []
    hint = f"; {there}" if there else f"; did you mean {by_folded[close[0]]!r}?" if close else ""
    raise BadInput(f"{option} must be one of: {', '.join(valid)} (not {value!r}{hint})")


def completer(valid):
    """A typer `autocompletion` offering `valid` (shell completion of --status values)."""

    def complete(incomplete: str):
        return [v for v in valid if v.startswith(incomplete)]

    return complete


def _completion_runtime(ctx):
    """The runtime shell completion reads task and schedule ids from: the configuration the
    command line names (`--config`, `--database`, FLOWJOBS_CONFIG, ./flowjobs.toml), its
    `[tasks] modules` found beside it; no database is opened."""
    from flowjobs.cli.main import State
    from flowjobs.runtime import Runtime

    root = ctx.find_root().params
    state = State(root.get("config"), "error", "text", root.get("database"))
    return Runtime(state.settings(), migrate=False)


def complete_tasks(ctx, incomplete: str) -> list[str]:
    """Shell completion of a task id: every registered task (and `billing-run` for trigger)."""
    try:
        ids = sorted(t.id for t in _completion_runtime(ctx).registry.all())
    except Exception:  # a broken configuration completes nothing rather than print an error
        return []
    if ctx.command.name == "trigger":
        ids.append("billing-run")
    return [i for i in ids if i.startswith(incomplete)]


def complete_schedules(ctx, incomplete: str) -> list[str]:
    """Shell completion of a schedule id: the built-in cron tasks' and `[schedules.<id>]`."""
    try:
        ids = sorted(_completion_runtime(ctx).schedules)
    except Exception:  # a broken configuration completes nothing rather than print an error
        return []
    return [i for i in ids if i.startswith(incomplete)]


def unknown_task(task_id: str, known) -> UnknownTask:
    """The error for a task id nobody registered: the closest ids, not all of them."""
    known = sorted(known)
    close = difflib.get_close_matches(task_id, known, n=3, cutoff=0.5)
    hint = (
        f"; did you mean {' or '.join(repr(c) for c in close)}?"
        if close
        else f"; {len(known)} tasks are registered"
    )
    return UnknownTask(f"unknown task {task_id!r}{hint} (`flowjobs tasks list` shows them all)")


def check_task(runtime, task_id: str | None) -> str | None:
    """A `--task` filter: a registered task id, or UnknownTask with suggestions (exit 2)."""
    if task_id is None:
        return None
    known = [t.id for t in runtime.registry.all()]
    if task_id not in known:
        raise unknown_task(task_id, known)
    return task_id
