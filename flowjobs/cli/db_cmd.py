"""`flowjobs db upgrade|status`: versioned schema migrations."""

from __future__ import annotations

import typer

from flowjobs.store.db import redact

app = typer.Typer(help="Database schema.", no_args_is_help=True)


def _database(ctx):
    from flowjobs.store.db import Database

    settings = ctx.obj.settings()
    return Database(settings.database_url(), settings.database.busy_timeout)


@app.command("upgrade")
def upgrade(ctx: typer.Context):
    """Create the database and its schema, or upgrade it to this version's newest revision."""
    from flowjobs.errors import DatabaseError
    from flowjobs.store import failures, migrate

    db = _database(ctx)
    file = db.dialect == "sqlite" and db.path != ":memory:"
    problem = failures.unusable_path(db.path) if file else None
    if problem:
        raise DatabaseError(f"cannot create database {db.path}: {problem}")
    migrate.current_revision(db)  # a wrong file fails here, before the lock file beside it is made
    before, after = migrate.upgrade(db)
    if file and before == after and failures.folder_read_only(db.path):
        raise failures.read_only(db.where())  # up to date, but no command could write to it
    if before == after:
        typer.echo(f"{redact(db.url)}: already at revision {after}")
    else:
        typer.echo(f"{redact(db.url)}: upgraded from {before or 'empty'} to {after}")


@app.command("status")
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object {url, where, dialect, exists, revision, head, current, "
        "size_bytes, runs: {status: count}}.",
    ),
):
    """Which database this finds and what is in it: URL (password hidden), schema revision
    against this version's newest, size, runs by status. Creates nothing; exit 4 when there
    is no database at the place it looked.
    """
    from flowjobs.cli import output
    from flowjobs.store import migrate
    from flowjobs.store.inspect import NoDatabase, missing_message, probe

    settings = ctx.obj.settings()
    found = probe(settings.database_url(), settings.database.busy_timeout, counts=True)
    data = {
        "url": found.url,
        "where": found.where,
        "dialect": found.dialect,
        "exists": found.exists,
        "revision": found.revision,
        "head": migrate.HEAD,
        "current": found.revision == migrate.HEAD,
        "size_bytes": found.size_bytes,
        "runs": found.runs,
    }
    if not found.exists:
        if as_json:
            output.emit_json(data)
        raise NoDatabase(missing_message(found, ctx.obj.database_origin()))
    if as_json:
        output.emit_json(data)
        return
    elsewhere = found.belongs_elsewhere()
    if elsewhere:
        revision = f"none ({elsewhere}: give flowjobs a database of its own)"
    else:
        revision = found.revision or "none (an empty database: run `flowjobs db upgrade`)"
    if found.revision and found.revision not in migrate.known_revisions():
        revision += " (newer than this flowjobs: upgrade flowjobs)"
    elif found.revision and found.revision != migrate.HEAD:
        revision += " (run `flowjobs db upgrade`)"
    typer.echo(f"database: {found.url}")
    typer.echo(f"from:     {ctx.obj.database_origin().removeprefix('from ')}")
    typer.echo(f"revision: {revision}")
    typer.echo(f"newest:   {migrate.HEAD}")
    typer.echo(f"size:     {_size(found.size_bytes)}")
    runs = ", ".join(f"{k} {v}" for k, v in found.runs.items()) or "none"
    typer.echo(f"runs:     {sum(found.runs.values())} ({runs})")


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    size: float = n
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


@app.command("copy")
def copy(
    ctx: typer.Context,
    to: str = typer.Option(
        ...,
        "--to",
        metavar="URL",
        help="Target database: a URL or an SQLite file path, as --database takes, e.g. "
        "postgresql+psycopg://user@host/flowjobs.",
    ),
    batch: int = typer.Option(
        1000, "--batch", metavar="N", min=1, max=100000, help="Rows per insert."
    ),
):
    """Copy every run, schedule, inbox event and billing row into an empty database, verifying counts."""
    from flowjobs.cli import output
    from flowjobs.config import database_option
    from flowjobs.ops.copy import copy_database

    to = database_option(to, "--to")  # what --database takes, read the same way; else exit 2
    from flowjobs.store.inspect import require_database

    require_database(ctx.obj.settings(), ctx.obj.database_origin())  # an empty source: exit 4
    source = _database(ctx)
    counts = copy_database(source.url, to, batch, now_ms=ctx.obj.runtime().clock.now_ms())
    for table, count in counts.items():
        typer.echo(f"{table}\t{count}")
    output.note(
        f"copied {sum(counts.values())} rows from {redact(source.url)} to {redact(to)}; "
        "row counts verified. Point [database] url at the new database, then start the workers."
    )
    from flowjobs.ops.copy import others_tables

    left = others_tables(source.url)
    if left:  # an application's own tables in the same database (README's recipe writes one)
        output.note(
            f"not copied: {', '.join(left)} ({'it is' if len(left) == 1 else 'they are'} not "
            "flowjobs' own); copy them yourself if the application needs them there"
        )
