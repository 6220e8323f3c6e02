"""`flowjobs run-worker`: the worker pool (N threads per process, P processes)."""

from __future__ import annotations

import os
import signal
import threading

import typer

from flowjobs.cli import output
from flowjobs.errors import BadInput


def run_worker(
    ctx: typer.Context,
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        "-n",
        metavar="N",
        min=1,
        help="Runs at once per process (default [worker] concurrency).",
    ),
    processes: int | None = typer.Option(
        None,
        "--processes",
        "-P",
        metavar="N",
        min=1,
        help="Worker processes under one supervisor (default [worker] processes).",
    ),
    queue: list[str] | None = typer.Option(
        None,
        "--queue",
        "-q",
        metavar="QUEUE",
        help="Take runs only from this queue (repeatable; default [worker] queues).",
    ),
    burst: bool = typer.Option(
        False, "--burst", help="Exit 0 once no run is due and none is executing (for cron)."
    ),
    max_jobs: int | None = typer.Option(
        None, "--max-jobs", metavar="N", min=1, help="Exit after this many runs (per process)."
    ),
    shutdown_timeout: str | None = typer.Option(
        None,
        "--shutdown-timeout",
        metavar="DURATION",
        help="On SIGTERM, wait this long for running tasks (default [worker] shutdown_timeout).",
    ),
    no_scheduler: bool = typer.Option(
        False, "--no-scheduler", help="Do not run the cron scheduler in this worker."
    ),
):
    """Run the worker pool until stopped (SIGTERM/SIGINT: finish running tasks, then exit 0)."""
    from flowjobs.durations import parse_duration

    state = ctx.obj
    if queue is not None and any(not q.strip() for q in queue):  # as [worker] queues: a worker
        raise BadInput('--queue names no queue: give a name ("*" takes every queue)')  # of none
    rt = state.runtime()
    grace = output.parse_option(shutdown_timeout, parse_duration, "--shutdown-timeout")
    procs = processes or rt.settings.worker.processes
    if procs > 1:
        rt.warn_unknown_queues(queue or rt.settings.worker.queues)  # once, not once a child
        # The database, checked (and its schema made) once here: a wrong URL is said once, and
        # a child exiting 4 later means the database went away meanwhile (the supervisor then
        # restarts it with back-off instead of stopping them all).
        _ = rt.store
        rt.db.close()
        raise typer.Exit(
            _supervise(
                state,
                procs,
                concurrency,
                queue,
                burst,
                max_jobs,
                shutdown_timeout,
                no_scheduler,
                grace if grace is not None else rt.settings.worker.shutdown_timeout,
            )
        )
    options = rt.worker_options(
        concurrency=concurrency,
        queues=queue or None,
        shutdown_timeout=grace,
        burst=burst,
        max_jobs=max_jobs,
    )
    from flowjobs.core.supervisor import supervised

    raise typer.Exit(
        rt.run_worker(
            options,
            scheduler=not no_scheduler,
            on_start=_install_signals,
            warn_queues=not supervised(),
        )
    )


STOP_NOW_WAIT = 5.0  # seconds a second SIGTERM waits to give running runs back before exiting


def _install_signals(worker) -> None:
    from flowjobs.cli.signals import on_signals
    from flowjobs.core.supervisor import adopt, supervised
    from flowjobs.logs import signal_line

    received: list[int] = []
    quiet = supervised()  # the supervisor has said what a stop does, once for all
    if quiet:
        adopt()

    def handler(signum):
        if signum == signal.SIGUSR1:  # the supervisor's "stop at once" (a second signal to it)
            received.append(signum)
        elif quiet and received:
            # under a supervisor a repeated signal is no "stop at once": systemd sends SIGTERM
            # to every process of the unit and the supervisor forwards its own, two for each
            # child; the supervisor stops a child at once with SIGUSR1
            return
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) > 1:
            os.write(
                2,
                signal_line(
                    "flowjobs.worker",
                    f"received {name}"
                    + (" (the supervisor's stop at once)" if signum == signal.SIGUSR1 else " again")
                    + ": stopping now; running runs are given back",
                ),
            )
            # this is the signal thread (flowjobs.cli.signals), not the handler: the give-back
            # may wait for the database, for STOP_NOW_WAIT at most
            threading.Timer(STOP_NOW_WAIT, os._exit, (1,)).start()
            try:
                worker.give_back_running(
                    f"worker stopped at once ({name}{'' if signum == signal.SIGUSR1 else ' twice'})",
                    "stopped at once",
                )
                worker.mark_stopped()  # `workers` and `trigger --wait` no longer count on it
            except BaseException:  # the rescuer takes them over when their leases run out
                pass
            os._exit(1)
        if not quiet:
            os.write(
                2,
                signal_line(
                    "flowjobs.worker",
                    f"received {name}: finishing running tasks (up to "
                    f"{worker.opt.shutdown_timeout:g}s), then exiting; send it again to stop at "
                    "once",
                ),
            )
        worker.stop()

    on_signals(handler, (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1))


def _supervise(
    state, procs, concurrency, queue, burst, max_jobs, shutdown_timeout, no_scheduler, grace
) -> int:
    from flowjobs.core.supervisor import Supervisor, child_argv

    args: list[str] = []
    if concurrency:
        args += ["--concurrency", str(concurrency)]
    for q in queue or []:
        args += ["--queue", q]
    if burst:
        args.append("--burst")
    if max_jobs:
        args += ["--max-jobs", str(max_jobs)]
    if shutdown_timeout:
        args += ["--shutdown-timeout", shutdown_timeout]
    if no_scheduler:
        args.append("--no-scheduler")
    return Supervisor(
        child_argv(state.config, state.log_level, args, state.log_format),
        procs,
        burst,
        grace=grace,
        database_checked=True,
    ).run()


def register(app: typer.Typer) -> None:
    app.command("run-worker")(run_worker)
