"""Database URLs and DB-API connections for the two supported dialects.

SQLite: WAL, synchronous=NORMAL, a busy timeout, and autocommit mode so that every write
transaction is opened explicitly with `BEGIN IMMEDIATE` (a lock upgrade never fails half way).
PostgreSQL: psycopg 3 in autocommit mode; transactions are opened with `BEGIN`.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from flowjobs.errors import DatabaseError

SQLITE_BUSY_TIMEOUT_S = 30.0


class Database:
    """Knows the URL and dialect; lends connections from a small pool.

    Task threads come and go (one per run), so connections are borrowed per operation rather
    than kept per thread; a connection that saw an error is closed instead of returned.
    """

    POOL_SIZE = 16

    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            self.path = url[len("sqlite:///"):]
        elif url.startswith("postgresql"):
            self.dialect = "postgresql"
            self.conninfo = re.sub(r"^postgresql\+\w+://", "postgresql://", url)
        else:
            raise DatabaseError(f"unsupported database URL: {url}")
        self._idle: list = []
        self._lock = threading.Lock()
        self.opened = 0  # connections opened so far (the pool keeps this bounded)
        # SQLite has one writer at a time. Threads of one process queue for it on a Python lock
        # (an instant hand-over) instead of in SQLite's busy handler, which sleeps 1-100 ms
        # between tries. PostgreSQL needs no such lock.
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else _NoLock()

    # -- connections -------------------------------------------------------------------
    def connect(self):
        """A new connection, configured for this dialect."""
        self.opened += 1
        try:
            if self.dialect == "sqlite":
                return _connect_sqlite(self.path)
            return _connect_postgresql(self.conninfo)
        except DatabaseError:
            raise
        except Exception as exc:  # driver-specific connection errors
            raise DatabaseError(f"cannot open database {redact(self.url)}: {exc}") from exc

    @contextmanager
    def borrow(self):
        """A pooled connection for the length of the block."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        conn = conn or self.connect()
        try:
            yield conn
        except BaseException:
            _close(conn)
            raise
        with self._lock:
            if len(self._idle) < self.POOL_SIZE:
                self._idle.append(conn)
                return
        _close(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)

    # -- transactions ------------------------------------------------------------------
    @contextmanager
    def transaction(self, conn=None):
        """A write transaction on `conn`, or on a pooled connection when none is given."""
        if conn is None:
            with self.borrow() as pooled, self.transaction(pooled) as tx:
                yield tx
            return
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
            try:
                yield conn
            except BaseException:
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    pass  # a broken connection: the pool closes it
                raise
            conn.execute("COMMIT")

    def is_transient(self, exc: BaseException) -> bool:
        """Errors worth retrying: a locked SQLite file, a dropped PostgreSQL connection."""
        if self.dialect == "sqlite":
            return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
        import psycopg

        return isinstance(exc, (psycopg.OperationalError, psycopg.errors.SerializationFailure))


def _connect_sqlite(path: str):
    if path != ":memory:":
        parent = Path(path).parent
        if not parent.is_dir():
            raise DatabaseError(f"cannot open database {path}: directory {parent} does not exist")
    conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _connect_postgresql(conninfo: str):
    import psycopg

    return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _close(conn) -> None:
    try:
        conn.close()
    except Exception:
        pass


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
