"""`flowjobs runs watch`: a live terminal view (rich) of queue depths and the newest runs,
redrawn in place every `--interval`. `--once` prints one frame and exits (also for pipes)."""

from __future__ import annotations

import time

from flowjobs.cli.views import run_summary

STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "executing": "cyan",
    "retrying": "yellow",
    "queued": "white",
    "delayed": "dim",
    "canceled": "magenta",
    "expired": "dim",
}


def frame(runtime, limit: int):
    from rich.console import Group
    from rich.table import Table

    queues = Table(title="queues", expand=True)
    for column in ("queue", "due now", "executing", "oldest wait"):
        queues.add_column(column)
    for queue, due, running, wait in runtime.store.queue_depths(runtime.clock.now_ms()):
        queues.add_row(queue, str(due), str(running), f"{wait:.1f}s")
    counts = runtime.store.count_by_status()
    runs = Table(
        title="runs — " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), expand=True
    )
    runs.add_column("id", no_wrap=True, min_width=25)  # ids are what you copy: never cut
    for column in ("task", "status", "attempts", "created_at", "error"):
        runs.add_column(column, overflow="ellipsis", no_wrap=True)
    for row in runtime.store.list_runs(limit=limit):
        r = run_summary(row)
        runs.add_row(
            r["id"],
            r["task"],
            f"[{STATUS_STYLE.get(r['status'], 'white')}]{r['status']}[/]",
            str(r["attempts"]),
            r["created_at"] or "",
            (r["error"] or "")[:60],
        )
    return Group(queues, runs)


def watch(runtime, interval: float, limit: int, once: bool) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if once or not console.is_terminal:
        console = Console(width=max(console.width, 140)) if not console.is_terminal else console
        console.print(frame(runtime, limit))
        return
    with Live(frame(runtime, limit), console=console, refresh_per_second=4, screen=False) as live:
        while True:
            time.sleep(interval)
            live.update(frame(runtime, limit))
