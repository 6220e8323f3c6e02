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
