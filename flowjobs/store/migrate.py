"""Versioned schema migrations (Alembic) and the fast "is the schema current?" check.

Every command that touches the database calls `ensure_schema`: a one-row read of
`alembic_version` over the DB-API. Only when the schema is missing does it import Alembic and
SQLAlchemy and create it, under a lock (an advisory lock on PostgreSQL, a file lock beside the
SQLite file, `<db>.migrate-lock`, removed by its holder before it lets go) so that two
processes starting on a new database do not race. An older schema is
upgraded by `flowjobs db upgrade` alone (`upgrade`); other commands refuse it (exit 4).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

from flowjobs.errors import BadInput, DatabaseError
from flowjobs.store.db import Database, redact

HEAD = "0018"  # keep equal to the newest revision in migrations/versions (a test checks it)
MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x666C6F776A6F6273  # "flowjobs"
# For a migrating session: an index built on a big table takes longer than any time-out meant
# for queries, and the table lock it needs may wait for the transactions of older processes.
NO_TIMEOUTS = ("SET statement_timeout = 0", "SET lock_timeout = 0")


def current_revision(db: Database) -> str | None:
    # A pooled connection: on the hot path (`flowjobs trigger`) the insert reuses it.
    with db.borrow() as conn:
        if db.dialect == "sqlite":
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
            ).fetchone()
        else:
            found = conn.execute("SELECT to_regclass('alembic_version')").fetchone()[0]
        if not found:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None


class SchemaBehind(DatabaseError):
    """The database's schema is older than this flowjobs'; only `flowjobs db upgrade` moves it."""


def ensure_schema(db: Database) -> None:
    """Create the schema of a new database; refuse one at an older revision (only `flowjobs db
    upgrade` upgrades: a newer flowjobs's `runs list` or `doctor` upgraded it, and the workers
    of the older version still running then could not insert runs) or at a newer one."""
    revision = current_revision(db)
    if revision == HEAD:
        return
    if revision is not None:
        raise _behind(db, revision)
    before, _ = upgrade(db)  # a new database; under the migration lock: two first commands
    if before is None:  # do not race. Said, once: a mistyped path made one without a word
        logging.getLogger("flowjobs").info("created a new flowjobs database at %s", db.where())


def _behind(db: Database, revision: str) -> DatabaseError | BadInput:
    from flowjobs.store.inspect import FLOWJOBS_REVISION

    if not FLOWJOBS_REVISION.fullmatch(revision):  # not a newer flowjobs: another application
        return BadInput(
            f"database {db.where()} has another application's schema (Alembic revision "
            f"{revision}, not one of flowjobs'): give flowjobs a database of its own (nothing "
            "was changed)"
        )
    if revision not in known_revisions():
        return DatabaseError(
            f"database {redact(db.url)} is at schema revision {revision}, newer than this "
            f"flowjobs knows (newest: {HEAD}); upgrade flowjobs"
        )
    return SchemaBehind(
        f"database {redact(db.url)} is at schema revision {revision}, older than this "
        f"flowjobs ({HEAD}): stop the flowjobs processes of the older version, then run "
        '`flowjobs db upgrade` once (docs/operations.md, "Upgrading"); nothing was changed'
    )


# The tables the migrations create (a test keeps this equal to what a migrated database has).
OWN_TABLES = frozenset(
    [
        "billing_period_items",
        "billing_periods",
        "billing_runs",
        "checkout_sessions",
        "countries",
        "customers",
        "discount_redemptions",
        "events",
        "fee_calculations",
        "flowjobs_attempts",
        "flowjobs_logs",
        "flowjobs_runs",
        "flowjobs_schedules",
        "flowjobs_workers",
        "invoice_line_items",
        "invoices",
        "memberships",
        "organizations",
        "payment_methods",
        "payments",
        "prices",
        "products",
        "purchases",
        "subscription_items",
        "subscriptions",
        "users",
        "webhook_deliveries",
        "webhook_endpoints",
        "webhook_events",
    ]
)


def upgrade(db: Database, target: str = "head") -> tuple[str | None, str | None]:
    """Run pending migrations; returns (revision before, revision after)."""
    with _migration_lock(db):
        before = current_revision(db)
        if before is None:
            _refuse_others_tables(db)
        if before is not None and before not in known_revisions():
            raise _behind(db, before)
        if before != HEAD or target != "head":
            _run_alembic(db, target)
        return before, current_revision(db)


def _refuse_others_tables(db: Database) -> None:
    """A database without flowjobs' schema that holds tables of the names it would create is
    another application's: refused before anything is written (it failed half-way, with the
    DDL of the clashing table as its message, and left SQLite's file half-migrated)."""
    with db.borrow() as conn:
        if db.dialect == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        else:
            sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        clashing = sorted({row[0] for row in conn.execute(sql).fetchall()} & OWN_TABLES)
    if "flowjobs_runs" in clashing:
        raise BadInput(
            f"database {db.where()} has flowjobs' tables but no schema revision: its first "
            "migration was interrupted half-way; if it holds nothing yet, drop its flowjobs "
            "tables (or start from a new database) and run `flowjobs db upgrade` again"
        )
    if clashing:
        shown = ", ".join(clashing[:6]) + (
            f" and {len(clashing) - 6} more" if len(clashing) > 6 else ""
        )
        raise BadInput(
            f"database {db.where()} already has tables of the names flowjobs would create "
            f"({shown}) and no flowjobs schema: it belongs to another application; give "
            "flowjobs a database of its own (nothing was changed)"
        )


def known_revisions() -> set[str]:
    return {p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("*.py")}


def _run_alembic(db: Database, target: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(db.url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            if db.dialect == "postgresql":
                # A statement_timeout or lock_timeout set for flowjobs' role would cancel an
                # index built on a big table, and start-up would try again forever
                # (docs/operations.md).
                for setting in NO_TIMEOUTS:
                    connection.exec_driver_sql(setting)
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, target)
    except DatabaseError:
        raise
    except Exception as exc:
        from flowjobs.store.failures import one_line, translate

        known = translate(exc, redact(db.url))
        if known is not None:
            raise known from exc
        raise DatabaseError(f"migrating {redact(db.url)} failed: {one_line(exc)}") from exc
    finally:
        engine.dispose()


@contextmanager
def _migration_lock(db: Database):
    if db.dialect == "postgresql":
        conn = db.connect()
        try:
            # Waiting for another process's migration, then idle while this one's runs on
            # another connection: an idle_session_timeout (PostgreSQL 14+) would end the session
            # and free the lock half-way.
            for setting in NO_TIMEOUTS:
                conn.execute(setting)
            if conn.info.server_version >= 140000:
                conn.execute("SET idle_session_timeout = 0")
            conn.execute("SELECT pg_advisory_lock(%s)", (_PG_LOCK_KEY,))
            yield
        finally:
            conn.close()  # releases the session lock
        return
    if db.path == ":memory:":
        yield
        return
    import fcntl

    from flowjobs.store.failures import unusable_path

    problem = unusable_path(db.path)  # before the lock file beside it is made (or fails)
    if problem:
        raise DatabaseError(f"cannot open database {db.path}: {problem}")
    path = db.path + ".migrate-lock"
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, path):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # locked a file its holder removed: another may be locking the new one
    try:
        yield
    finally:
        try:
            os.unlink(path)  # still locked: a waiter on this file sees it gone and starts over
        except OSError:
            pass  # left as before (another user's folder): the next lock takes it as it is
        os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    """Whether the file locked on `fd` is still the one at `path`. The holder of the lock
    removes the file before it lets go; a process that waited on it then holds the lock of a
    file no one else will open, while a newcomer may have made and locked a new one. So a lock
    counts only if its file is still there: otherwise the waiter opens the path again."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino)
