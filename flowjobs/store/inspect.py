"""Looking at a database without changing it: does it exist, which schema revision, how big,
how many runs in each status. For `flowjobs db status`, `doctor` and the read-only commands,
which must never create a database (or a lock file beside one) by looking for it.

An SQLite file is opened read-only (`mode=ro`), only once it is known to exist; PostgreSQL
databases cannot be created by connecting, so they are read through an ordinary connection.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from flowjobs.errors import DatabaseError
from flowjobs.store.db import redact, sqlite_path

SQLITE_PREFIX = "sqlite:///"
FLOWJOBS_REVISION = re.compile(r"\d{4}")  # flowjobs' revisions: 0001, 0002, …


class NoDatabase(DatabaseError):
    """There is no (flowjobs) database at the configured place: exit 4, naming it."""


@dataclass
class Probe:
    url: str  # redacted
    where: str  # the SQLite file's path, or the redacted URL
    dialect: str
    exists: bool
    revision: str | None = None
    size_bytes: int | None = None
    runs: dict[str, int] = field(default_factory=dict)
    # no flowjobs schema, but tables of the names it would create: another application's
    clashing: list[str] = field(default_factory=list)
    foreign_revision: str | None = None  # another application's Alembic revision

    def belongs_elsewhere(self) -> str | None:
        """Why this database is another application's (as `db upgrade` refuses it), or None."""
        if self.foreign_revision is not None:
            return (
                f"it has another application's schema (Alembic revision {self.foreign_revision}, "
                "not one of flowjobs'): it belongs to another application"
            )
        if self.revision is not None or not self.clashing:
            return None
        shown = ", ".join(self.clashing[:6]) + (
            f" and {len(self.clashing) - 6} more" if len(self.clashing) > 6 else ""
        )
        return (
            f"it has no flowjobs schema but tables of the names flowjobs would create "
            f"({shown}): it belongs to another application"
        )


def where(url: str) -> str:
    return url[len(SQLITE_PREFIX) :] if url.startswith(SQLITE_PREFIX) else redact(url)


def _sqlite_size(path: str) -> int:
    return sum(
        os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p)
    )  # the WAL holds committed pages not yet copied back


def probe(url: str, busy_timeout: float = 30.0, counts: bool = False) -> Probe:
    """What is at `url`, creating nothing. Connection failures propagate (the caller's
    `guarded` turns them into the documented exit codes)."""
    if url.startswith(SQLITE_PREFIX):
        path = sqlite_path(url)
        found = Probe(redact(url), path, "sqlite", path == ":memory:" or os.path.isfile(path))
        if not found.exists or path == ":memory:":
            return found
        found.size_bytes = _sqlite_size(path)
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout)
        try:
            _read(conn, found, counts, "sqlite")
        finally:
            conn.close()
        return found
    from flowjobs.store.db import Database

    found = Probe(redact(url), redact(url), "postgresql", True)
    db = Database(url, busy_timeout)
    try:
        with db.borrow() as conn:
            found.size_bytes = int(
                conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            )
            _read(conn, found, counts, "postgresql")
    finally:
        db.close()
    return found


def _read(conn, found: Probe, counts: bool, dialect: str) -> None:
    if dialect == "sqlite":
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    else:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        }
    if "alembic_version" in tables:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        found.revision = row[0] if row else None
    if found.revision is not None and not FLOWJOBS_REVISION.fullmatch(found.revision):
        # another application's Alembic history (`3f2a1b9c8d7e`): not a newer flowjobs
        found.foreign_revision, found.revision = found.revision, None
    if found.revision is None:
        from flowjobs.store.migrate import OWN_TABLES

        found.clashing = sorted(tables & OWN_TABLES)
    if counts and "flowjobs_runs" in tables:
        found.runs = {
            status: int(n)
            for status, n in conn.execute(
                "SELECT status, count(*) FROM flowjobs_runs GROUP BY status ORDER BY status"
            )
        }


def missing_message(found: Probe, origin: str = "") -> str:
    """`no database at …` with the fix; for a database without flowjobs' tables likewise."""
    fix = (
        "point --database, FLOWJOBS_DATABASE_URL or [database] url at the one you meant, "
        "or create it with `flowjobs db upgrade`"
    )
    came = f" ({origin})" if origin else ""
    if not found.exists and os.path.isdir(found.where):
        return (
            f"{found.where}{came} is a folder, not a database file; point --database, "
            f"FLOWJOBS_DATABASE_URL or [database] url at a file (such as "
            f"{os.path.join(found.where, 'flowjobs.db')})"
        )
    folder = os.path.dirname(os.path.abspath(found.where)) if found.where else ""
    blocking = next(  # a file where the path needs a folder: mkdir -p cannot make it
        (p for p in reversed(Path(folder).parents) if p.exists() and not p.is_dir()), None
    )
    if blocking is None and folder and os.path.exists(folder) and not os.path.isdir(folder):
        blocking = Path(folder)
    if not found.exists and found.dialect == "sqlite" and blocking is not None:
        return (
            f"no database at {found.where}{came}: {blocking} is a file, not a folder; point "
            "--database, FLOWJOBS_DATABASE_URL or [database] url at the one you meant"
        )
    if not found.exists and found.dialect == "sqlite" and folder and not os.path.isdir(folder):
        return (  # `db upgrade` would fail there too: it makes the file, not its folders
            f"no database at {found.where}{came}, and no folder {folder} to hold one; point "
            "--database, FLOWJOBS_DATABASE_URL or [database] url at the one you meant, or "
            f"create the folder (mkdir -p {folder}) and then `flowjobs db upgrade`"
        )
    if not found.exists:
        return f"no database at {found.where}{came}; {fix}"
    elsewhere = found.belongs_elsewhere()
    if elsewhere:
        return (
            f"no flowjobs tables in database {found.where}{came}: {elsewhere}; point "
            "--database, FLOWJOBS_DATABASE_URL or [database] url at flowjobs' own database"
        )
    return f"no flowjobs tables in database {found.where}{came}; {fix}"


def require_database(settings, origin: str = "") -> Probe:
    """For read-only commands: the database exists and has flowjobs' schema, or NoDatabase."""
    found = probe(settings.database_url(), settings.database.busy_timeout)
    if not found.exists or found.revision is None:
        raise NoDatabase(missing_message(found, origin))
    return found
