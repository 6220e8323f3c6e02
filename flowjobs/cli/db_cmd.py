"""`flowjobs db upgrade|status`: versioned schema migrations."""

from __future__ import annotations

import typer

from flowjobs.store.db import redact

app = typer.Typer(help="Database schema.", no_args_is_help=True)


def _database(ctx):
    from flowjobs.config import load_settings
    from flowjobs.store.db import Database

    return Database(load_settings(ctx.obj.config).database_url())


@app.command("upgrade")
def upgrade(ctx: typer.Context):
    """Create the schema or upgrade it to this version's newest revision."""
    from flowjobs.store import migrate

    db = _database(ctx)
    before, after = migrate.upgrade(db)
    if before == after:
        typer.echo(f"{redact(db.url)}: already at revision {after}")
    else:
        typer.echo(f"{redact(db.url)}: upgraded from {before or 'empty'} to {after}")


@app.command("status")
def status(ctx: typer.Context):
    """Show the schema revision of the database and the newest this version knows."""
    from flowjobs.store import migrate

    db = _database(ctx)
    current = migrate.current_revision(db)
    typer.echo(f"database: {redact(db.url)}")
    typer.echo(f"revision: {current or 'empty (run flowjobs db upgrade)'}")
    typer.echo(f"newest:   {migrate.HEAD}")


@app.command("copy")
def copy(
    ctx: typer.Context,
    to: str = typer.Option(
        ..., "--to", help="Target database URL, e.g. postgresql+psycopg://user@host/flowjobs."
    ),
    batch: int = typer.Option(1000, "--batch", min=1, max=100000, help="Rows per insert."),
):
    """Copy every run, schedule, inbox event and billing row into an empty database, verifying counts."""
    from flowjobs.cli import output
    from flowjobs.config import DatabaseSettings
    from flowjobs.errors import BadInput
    from flowjobs.ops.copy import copy_database

    try:
        DatabaseSettings(url=to)
    except ValueError:
        raise BadInput("--to must start with 'sqlite:///' or 'postgresql+psycopg://'") from None
    source = _database(ctx)
    counts = copy_database(source.url, to, batch)
    for table, count in counts.items():
        typer.echo(f"{table}\t{count}")
    output.note(
        f"copied {sum(counts.values())} rows from {redact(source.url)} to {redact(to)}; "
        "row counts verified. Point [database] url at the new database, then start the workers."
    )
