"""`flowjobs runs watch`: a live terminal view (rich) of queue depths and the newest runs,
redrawn in place every `--interval`. `--once` prints one frame and exits. Piped, it prints one
frame as three tab-separated tables with a header each, a blank line between them (queues,
runs by status, the newest runs), as every listing does for a pipe."""

from __future__ import annotations

import time

from flowjobs.cli.views import WATCH_COLUMNS, run_cells, run_summary
from flowjobs.store.states import RunStatus

STATUS_STYLE = {
    RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "red",
    RunStatus.EXECUTING: "cyan",
    RunStatus.RETRYING: "yellow",
    RunStatus.QUEUED: "white",
    RunStatus.DELAYED: "dim",
    RunStatus.CANCELED: "magenta",
    RunStatus.EXPIRED: "dim",
}


DEFAULT_COLUMNS = WATCH_COLUMNS


def _state(runtime, limit: int, columns, wide: bool = False) -> tuple[list, dict, list]:
    """(queue depths, runs by status, the newest runs' cells): what one frame shows (`wide`:
    errors whole, as `runs list` pipes them)."""
    depths = runtime.store.queue_depths(runtime.clock.now_ms())
    counts = runtime.store.count_by_status()
    rows = [
        run_cells(run_summary(row), list(columns), wide)
        for row in runtime.store.list_runs(limit=limit)
    ]
    return depths, counts, rows


def frame(runtime, limit: int, width: int = 140, columns=DEFAULT_COLUMNS):
    from rich.console import Group
    from rich.table import Table

    from flowjobs.cli.output import fitted_table

    depths, counts, rows = _state(runtime, limit, columns)
    queues = Table(title="queues")
    for column in ("queue", "due now", "executing", "oldest wait"):
        queues.add_column(column, no_wrap=True)
    for queue, due, running, wait in depths:
        queues.add_row(queue, str(due), str(running), f"{wait:.1f}s")
    runs = fitted_table(
        list(columns),
        rows,
        width,
        title="runs — " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"),
        style=lambda column, value: STATUS_STYLE.get(value) if column == "status" else None,
        fold=True,  # rich's Live crops each line to the width: fold a long id, never cut it
        hint="a wider terminal, or choose them with --columns",
    )
    return Group(queues, runs)


def watch(runtime, interval: float, limit: int, once: bool, columns=DEFAULT_COLUMNS) -> None:
    from rich.live import Live

    from flowjobs.cli.output import console as make_console
    from flowjobs.cli.output import is_tty

    console = make_console()
    if not is_tty():
        _plain(runtime, limit, columns)
        return
    if once:
        console.print(frame(runtime, limit, console.width, columns), crop=False)
        return
    with Live(
        frame(runtime, limit, console.width, columns),
        console=console,
        refresh_per_second=4,
        screen=False,
    ) as live:
        while True:
            time.sleep(interval)
            live.update(frame(runtime, limit, console.width, columns))


def _plain(runtime, limit: int, columns) -> None:
    """One frame for a pipe: the queues, the runs by status, the newest runs (tab-separated)."""
    import sys

    from flowjobs.cli.output import table

    depths, counts, rows = _state(runtime, limit, columns, wide=True)
    table(
        ["queue", "due_now", "executing", "oldest_wait_s"],
        [[queue, due, running, f"{wait:.1f}"] for queue, due, running, wait in depths],
    )
    sys.stdout.write("\n")
    table(["status", "runs"], [[status, n] for status, n in sorted(counts.items())])
    sys.stdout.write("\n")
    table(list(columns), rows)
