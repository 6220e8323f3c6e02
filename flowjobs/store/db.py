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
    """Knows the URL and dialect; hands out one connection per thread."""

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
        self._local = threading.local()
        self._all: list = []
        self._lock = threading.Lock()

    # -- connections -------------------------------------------------------------------
    def connect(self):
        """A new connection, configured for this dialect."""
        try:
            if self.dialect == "sqlite":
                return _connect_sqlite(self.path)
            return _connect_postgresql(self.conninfo)
        except DatabaseError:
            raise
        except Exception as exc:  # driver-specific connection errors
            raise DatabaseError(f"cannot open database {redact(self.url)}: {exc}") from exc

    def connection(self):
        """This thread's connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except Exception:
                    pass
            self._all.clear()
        self._local = threading.local()

    # -- transactions ------------------------------------------------------------------
    @contextmanager
    def transaction(self, conn=None):
        """A write transaction on `conn` (default: this thread's connection)."""
        conn = conn or self.connection()
        conn.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def is_transient(self, exc: BaseException) -> bool:
        """Errors worth retrying: a locked SQLite file, a dropped PostgreSQL connection."""
        if self.dialect == "sqlite":
            return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
        import psycopg

        return isinstance(exc, (psycopg.OperationalError, psycopg.errors.SerializationFailure))

    def reset_connection(self) -> None:
        """Drop this thread's connection (after a transient error) so the next use reconnects."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass


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


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
