"""`flowjobs doctor`."""

from __future__ import annotations

import typer

from flowjobs.cli import output


def doctor(
    ctx: typer.Context,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON array of checks: {check, status (ok|warn|fail), detail, fix}.",
    ),
):
    """Check configuration (task modules and schedules loaded as a worker loads them),
    database, schema, clock, workers, Stripe and SMTP; print a fix for each problem. Creates
    nothing (no database, no folder); exit 1 when a check fails.
    """
    import sys

    from flowjobs.errors import ConfigError
    from flowjobs.ops.doctor import invalid_configuration, run_checks

    # Importing `[tasks] modules` must not leave __pycache__ folders beside them either.
    sys.dont_write_bytecode = True
    try:
        runtime = ctx.obj.runtime()
    except ConfigError as exc:
        checks = invalid_configuration(exc.problems)
    else:
        checks = run_checks(runtime, ctx.obj.database_origin())
    if as_json:
        output.emit_json([c.as_dict() for c in checks])
    else:
        for c in checks:
            typer.echo(f"{c.status:<5}{c.name:<14}{c.detail}")
            if c.fix:
                typer.echo(f"{'':<19}fix: {c.fix}")
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
