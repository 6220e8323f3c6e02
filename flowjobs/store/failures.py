"""What a database failure means to an operator: one of a few kinds, each with a clear message
and exit code, whichever stack raised it (the DB-API drivers, or SQLAlchemy wrapping them).

  unavailable — the server cannot be reached or the connection dropped (exit 4)
  locked      — an SQLite file held by another program past the busy timeout (exit 5)
  full        — no space left for the database (exit 6)
  read-only   — the file or its folder cannot be written (exit 4)
  not-sqlite  — the file is not an SQLite database, or it is damaged (exit 4)
  conflict    — PostgreSQL rolled the transaction back for a deadlock or a serialization
                failure with a concurrent one; trying it again is the cure (exit 4)
  canceled    — PostgreSQL canceled a statement: a `statement_timeout` or `lock_timeout` set
                for flowjobs' role or database ran out, or an operator canceled it (exit 4)
  too-large   — PostgreSQL refused a value past one of its limits (an index entry past 2,704
                bytes, a row too big); not transient: the same value fails again (exit 4)
  denied      — PostgreSQL refused the role a privilege (tables owned by another role, no
                CREATE on the schema); not transient (exit 4)

`unavailable`, `locked`, `full`, `conflict` and `canceled` are transient: long-running
processes wait and go on. psycopg raises all of the PostgreSQL ones as `OperationalError`, and
they were all called "unavailable" before; an `OperationalError` not named here still is.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator

from flowjobs.errors import DatabaseError, DatabaseLocked, DatabaseUnavailable, DiskFull

TRANSIENT = ("unavailable", "locked", "full", "conflict", "canceled", "standby")


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's `.orig`) and what caused it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__


def classify(exc: BaseException) -> str | None:
    for e in _chain(exc):
        kind = _classify_one(e)
        if kind:
            return kind
    return None


def _classify_one(e: BaseException) -> str | None:
    if isinstance(e, DatabaseLocked):
        return "locked"
    if isinstance(e, DiskFull):
        return "full"
    if isinstance(e, DatabaseUnavailable):
        return "unavailable"
    if isinstance(e, sqlite3.OperationalError):
        text = str(e)
        if "locked" in text:
            return "locked"
        if "disk is full" in text or "disk I/O error" in text:
            return "full" if "full" in text else "unavailable"
        if "readonly" in text or "read-only" in text:
            return "read-only"
        if "unable to open" in text:
            return "unavailable"
        return None
    if isinstance(e, sqlite3.DatabaseError):
        text = str(e)
        if "not a database" in text or "malformed" in text:
            return "not-sqlite"
        return None
    psycopg = _psycopg()
    if psycopg is not None:
        if isinstance(e, psycopg.errors.DiskFull):
            return "full"
        if isinstance(e, psycopg.errors.ReadOnlySqlTransaction):
            return "standby"  # a server that takes no writes: a standby, a failover under way
        if isinstance(e, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)):
            return "conflict"
        if isinstance(e, (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable)):
            return "canceled"
        if isinstance(e, psycopg.errors.ProgramLimitExceeded):
            return "too-large"
        if isinstance(e, psycopg.errors.InsufficientPrivilege):
            return "denied"
        if isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError)):
            return "unavailable"
    return None


def _psycopg():
    import sys

    return sys.modules.get("psycopg")  # never import it for an SQLite user


def is_transient(exc: BaseException) -> bool:
    return classify(exc) in TRANSIENT


def raised_by_outage(exc: BaseException) -> bool:
    """Whether `exc` is, or was raised from (`raise … from`, SQLAlchemy's `.orig`), a database
    fault that passes. Unlike `is_transient`, an error merely raised while handling one (its
    `__context__`: a task that turns a database error into its own) does not count."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if _classify_one(e) in TRANSIENT:
            return True
        e = getattr(e, "orig", None) or e.__cause__
    return False


def translate(
    exc: BaseException, where: str, sqlite_path: str | None = None
) -> DatabaseError | None:
    """A flowjobs error with an operator's message for a driver failure, or None (a bug)."""
    kind = classify(exc) or (_file_error(exc, sqlite_path) if sqlite_path else None)
    if kind is None:
        return None
    if kind == "unavailable" and sqlite_path and folder_read_only(sqlite_path):
        kind = "read-only"  # SQLite says only "unable to open database file"
    if kind == "locked":
        holders = describe_holders(lock_holders(sqlite_path)) if sqlite_path else ""
        return DatabaseLocked(
            f"database {where} is locked{holders} and stayed locked past the busy "
            "timeout; try again when it is released (a backup or an open sqlite3 "
            "session holds it)"
        )
    if kind == "full":
        return DiskFull(
            f"no space left for database {where}: free disk space (nothing was "
            "half-written; the last change was rolled back)"
        )
    if kind == "read-only":
        return read_only(where)
    if kind == "not-sqlite":
        return not_sqlite(where, exc)
    if kind == "conflict":
        return DatabaseUnavailable(
            f"database {where} rolled this back for a conflict with a concurrent transaction "
            f"({_first_line(exc)}); nothing was written, try again"
        )
    if kind == "canceled":
        return DatabaseUnavailable(
            f"database {where} canceled the statement ({_first_line(exc)}): a "
            "statement_timeout or lock_timeout set for its role or database ran out, or an "
            "operator canceled it; nothing was written, try again"
        )
    if kind == "standby":
        return DatabaseUnavailable(
            f"database {where} takes no writes ({_first_line(exc)}): a standby server, or a "
            "failover under way; nothing was written, try again once the primary is back"
        )
    if kind == "denied":
        return DatabaseError(
            f"database {where} refused this role ({_first_line(exc)}): connect as the role "
            "that owns flowjobs' tables, or grant this one their privileges; to create them "
            "(`db upgrade`) a role needs CREATE on the schema, which PostgreSQL 15 and newer "
            "give on `public` to the database's owner only (ALTER DATABASE … OWNER TO the role, "
            "or GRANT CREATE ON SCHEMA public TO it); nothing was written"
        )
    if kind == "too-large":
        return DatabaseError(
            f"database {where} refused a value too large for it ({_first_line(exc)}); "
            "nothing was written"
        )
    return DatabaseUnavailable(
        f"database {where} is unavailable ({_first_line(exc)}); "
        "nothing was written, try again once it is back"
    )


def read_only(where: str) -> DatabaseError:
    if where not in ("", ":memory:") and not os.path.exists(where):  # nothing to call read-only
        folder = os.path.dirname(os.path.abspath(where))
        return DatabaseError(f"cannot create database {where}: its folder {folder} is not writable")
    return DatabaseError(
        f"database {where} is read-only: flowjobs needs to write the file and "
        "its folder (for the -wal and -shm files)"
    )


def not_sqlite(where: str, exc: BaseException) -> DatabaseError:
    return DatabaseError(
        f"{where} is not an SQLite database, or it is damaged ({_first_line(exc)}): point "
        "--database, FLOWJOBS_DATABASE_URL or [database] url at flowjobs' database file"
    )


def _file_error(exc: BaseException, sqlite_path: str) -> str | None:
    """An OSError on the SQLite file or a file beside it (its -wal, -shm, .migrate-lock):
    read-only or full. Other files' errors (a PDF folder, …) are not the database's."""
    import errno

    for e in _chain(exc):
        name = getattr(e, "filename", None)
        if isinstance(e, OSError) and isinstance(name, str) and name.startswith(sqlite_path):
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return "read-only"
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                return "full"
    return None


def unusable_path(path: str) -> str | None:
    """Why no SQLite file can be at `path` (it is a folder; its folder does not exist or is a
    file), or None. Not transient: waiting does not change it."""
    if os.path.isdir(path):
        return f"{path} is a folder, not a database file"
    parent = os.path.dirname(path) or "."
    if os.path.isdir(parent):
        return None
    if os.path.exists(parent):
        return f"{parent} is a file, not a folder"
    return f"directory {parent} does not exist"


def folder_read_only(path: str) -> bool:
    """The SQLite file's folder exists but cannot be written (a read-only mount, permissions),
    or the file itself cannot be."""
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        return False
    return not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK))


def _first_line(exc: BaseException) -> str:
    """The driver's own first line where there is one (SQLAlchemy's wrapper adds the SQL)."""
    psycopg = _psycopg()
    if psycopg is not None:
        for e in _chain(exc):
            if isinstance(e, psycopg.Error) and str(e).strip():
                return f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
    for e in _chain(exc):
        text = str(e).strip().splitlines()
        if text:
            return f"{type(e).__name__}: {text[0]}"
    return type(exc).__name__


def lock_holders(path: str) -> list[tuple[int, str]]:
    """(pid, command) of other processes holding a POSIX lock on an SQLite file or its -shm
    (Linux /proc/locks); empty where that cannot be known."""
    inodes = set()
    for name in (path, path + "-shm", path + "-wal"):
        try:
            st = os.stat(name)
        except OSError:
            continue
        inodes.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    holders = {}
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "POSIX":
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if key in inodes and pid != os.getpid():
            holders[pid] = _command(pid)
    return sorted(holders.items())


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def describe_holders(holders: list[tuple[int, str]]) -> str:
    if not holders:
        return ""
    return " by " + ", ".join(f"{command} (pid {pid})" for pid, command in holders)


def one_line(exc: BaseException) -> str:
    """A driver's message on one line (psycopg's span several, with hints)."""
    return (
        "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
        or type(exc).__name__
    )
