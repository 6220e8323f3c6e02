"""The `flowjobs` command. Subcommands live one module each and are added here.

Exit codes (flowjobs.errors.ExitStatus): 0 ok; 1 a run ended other than completed, or a
failure; 2 bad input (usage, configuration, arguments, payload, idempotency-key reuse); 3 not
found; 4 database unreachable, missing for a read-only command, or its schema newer than this
flowjobs; 5 locked; 6 disk full; 124 `trigger --wait` timed out. Errors, usage errors
included, are `error: …` lines on stderr (flowjobs.cli.main).
"""

from __future__ import annotations

import os
import sys

import typer

from flowjobs.cli.examples import ROOT as ROOT_EXAMPLE
from flowjobs.cli.main import LOG_FORMATS, guarded, log_level_number, setup
from flowjobs.errors import BadInput

app = typer.Typer(
    name="flowjobs",
    help="Background jobs for a billing platform: scheduler, worker pool, one-off tasks, webhook replay.",
    epilog=f"Example: {ROOT_EXAMPLE}",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    # rich help and errors on a terminal only: piped or under cron, plain text (and no ~50 ms
    # of rich/markdown imports).
    # NO_COLOR: plain help too (rich would keep bold and boxes' escape codes).
    rich_markup_mode="rich" if sys.stdout.isatty() and not os.environ.get("NO_COLOR") else None,
)


def _print_version(value: bool) -> None:
    if value:
        from flowjobs import __version__

        typer.echo(f"flowjobs {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        envvar="FLOWJOBS_CONFIG",
        metavar="PATH",
        help="Path of flowjobs.toml (default: ./flowjobs.toml if present).",
    ),
    database: str | None = typer.Option(
        None,
        "--database",
        metavar="URL",
        help="Database to use, before FLOWJOBS_DATABASE_URL and [database] url: "
        "sqlite:///PATH, a file path, or postgresql+psycopg://user@host/db.",
    ),
    log_level: str = typer.Option(
        "info",
        "--log-level",
        envvar="FLOWJOBS_LOG_LEVEL",
        metavar="LEVEL",
        help="debug, info, warning or error.",
    ),
    log_format: str = typer.Option(
        "auto",
        "--log-format",
        envvar="FLOWJOBS_LOG_FORMAT",
        metavar="FORMAT",
        help="text, json, or auto (text on a terminal, JSON lines otherwise).",
    ),
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        callback=_print_version,
    ),
):
    # a root option: its help is `flowjobs --help`, not the command's (BadParameter would say so)
    if log_level_number(log_level) is None:
        raise BadInput(
            "invalid value for --log-level (or FLOWJOBS_LOG_LEVEL): "
            f"must be debug, info, warning or error, not {log_level!r} (see `flowjobs --help`)"
        )
    if log_format not in LOG_FORMATS:
        raise BadInput(
            "invalid value for --log-format (or FLOWJOBS_LOG_FORMAT): "
            f"must be text, json or auto, not {log_format!r} (see `flowjobs --help`)"
        )
    ctx.obj = setup(config, log_level, log_format, database)


def _register() -> None:
    from flowjobs.cli import (
        billing_cmd,
        db_cmd,
        demo_cmd,
        doctor_cmd,
        documents_cmd,
        endpoints_cmd,
        events_cmd,
        runs_cmd,
        schedules_cmd,
        serve_cmd,
        tasks_cmd,
        trigger_cmd,
        worker_cmd,
        workers_cmd,
    )

    trigger_cmd.register(app)
    worker_cmd.register(app)
    workers_cmd.register(app)
    schedules_cmd.register(app)
    app.add_typer(runs_cmd.app, name="runs")
    app.add_typer(tasks_cmd.app, name="tasks")
    app.add_typer(db_cmd.app, name="db")
    app.add_typer(billing_cmd.app, name="billing")
    __import__("flowjobs.cli.billing_adjust_cmd", fromlist=["register"]).register(
        billing_cmd.app
    )  # issue 16 §1
    app.add_typer(demo_cmd.app, name="demo")
    app.add_typer(documents_cmd.app, name="documents")
    app.add_typer(endpoints_cmd.app, name="endpoints")
    events_cmd.register(app)
    serve_cmd.register(app)
    doctor_cmd.register(app)


_register()
__import__("flowjobs.cli.examples", fromlist=["add_examples"]).add_examples(app)


def main() -> None:
    """The typer application alone (`flowjobs.cli.main.main` is the entry point)."""
    guarded(app)
