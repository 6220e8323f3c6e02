"""Database URLs and DB-API connections for the two supported dialects.

SQLite: WAL, synchronous=NORMAL, a busy timeout, and autocommit mode so that every write
transaction is opened explicitly with `BEGIN IMMEDIATE` (a lock upgrade never fails half way).
PostgreSQL: psycopg 3 in autocommit mode; transactions are opened with `BEGIN`.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any

from flowjobs.errors import BadInput, DatabaseError, DatabaseGone, DatabaseUnavailable
from flowjobs.store import failures
from flowjobs.urls import redact

SQLITE_BUSY_TIMEOUT_S = 30.0
IDLE_CHECK_S = 5.0  # a pooled PostgreSQL connection idle this long is checked before it is lent
SQLITE_PAGE_SIZE = 2048  # bytes, for new databases (`_connect_sqlite`)
WAL_CHECKPOINT_BYTES = 4 << 20  # SQLite's own auto-checkpoint is at 1,000 pages: 2-4 MB
WAL_FORCE_BYTES = (
    64 << 20
)  # past this, checkpoint with writers held off, so the WAL cannot grow unbounded
FORCE_WAIT_S = 0.05  # how long such a checkpoint waits for readers of older snapshots
# SQLite: after writing this many rows (a statement or transaction counts as one, or as the
# runs it inserts) a process checkpoints the WAL from a background thread instead of in the
# commit that fills it (`Database.statement`); fewer never fill it.
BACKGROUND_CHECKPOINTS_AFTER = 100

log = logging.getLogger("flowjobs.db")


class _Holding:
    """Counts this thread's nesting of write blocks (`Database.writing`). A class rather than a
    generator context manager: entered by every write block, twice a worker turn, it costs
    ~0.25 µs against ~1 µs (measured with timeit)."""

    __slots__ = ("held",)

    def __init__(self, held: threading.local):
        self.held = held

    def __enter__(self) -> None:
        held = self.held
        held.depth = getattr(held, "depth", 0) + 1

    def __exit__(self, *exc) -> None:
        self.held.depth -= 1


class Database:
    """Knows the URL and dialect; lends connections from a small pool.

    Task threads come and go (one per run), so connections are borrowed per operation rather
    than kept per thread; a connection that saw an error is closed instead of returned. (One
    exception: a PostgreSQL JobStore keeps a connection of its own for worker turns.)
    """

    POOL_SIZE = 16

    def __init__(self, url: str, busy_timeout: float = SQLITE_BUSY_TIMEOUT_S):
        self.url = url
        self.busy_timeout = busy_timeout
        if url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            self.path = sqlite_path(url)
        elif url.startswith("postgresql"):
            self.dialect = "postgresql"
            self.conninfo = re.sub(r"^postgresql\+\w+://", "postgresql://", url)
        else:
            raise DatabaseError(f"unsupported database URL: {redact(url)}")
        self._idle: list[tuple[Any, float]] = []  # (connection, time.monotonic() it came back)
        self.idle_check = IDLE_CHECK_S
        self._lock = threading.Lock()
        self.autocheckpoint = True  # False: a Checkpointer thread checkpoints the WAL instead
        self._writer = None  # SQLite: the connection write transactions use (under _write_lock)
        # SQLite: rows written so far, as `statement` counts them (under _write_lock)
        self._writes = 0
        self._checkpointer: Checkpointer | None = None  # started by `statement`, see there
        self.opened = 0  # connections opened so far (the pool keeps this bounded)
        self.identity: tuple[int, int] | None = None  # SQLite: (device, inode) first opened
        self._abspath = ""  # SQLite: the file's absolute path when it was first opened
        # SQLite has one writer at a time. Threads of one process queue for it on a Python lock
        # (an instant hand-over) instead of in SQLite's busy handler, which sleeps 1-100 ms
        # between tries. PostgreSQL needs no such lock.
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else _NoLock()
        self._held = threading.local()  # SQLite: how deep this thread is in write blocks
        self._holder = _Holding(self._held)  # `with self._holding():` in write blocks

    # -- connections -------------------------------------------------------------------
    def connect(self, autocommit: bool = True):
        """A new connection, configured for this dialect. `autocommit=False` (PostgreSQL) is
        for SQLAlchemy, which opens transactions through the driver (`store.units`); SQLite
        connections always leave transactions to explicit `BEGIN IMMEDIATE`."""
        self.opened += 1
        try:
            if self.dialect == "sqlite":
                conn = _connect_sqlite(self.path, self.autocheckpoint, self.busy_timeout)
                if self.identity is None and self.path not in ("", ":memory:"):
                    self._abspath = os.path.abspath(self.path)  # a task may os.chdir
                    try:
                        found = os.stat(self._abspath)
                    except OSError:
                        pass  # not a file this check can follow: nothing to compare later
                    else:
                        self.identity = (found.st_dev, found.st_ino)
                return conn
            return _connect_postgresql(self.conninfo, autocommit)
        except DatabaseError:
            raise
        except Exception as exc:  # driver-specific connection errors
            if self.dialect == "sqlite" and failures.folder_read_only(self.path):
                raise failures.read_only(self.where()) from exc
            kind = failures.classify(exc)
            if kind == "not-sqlite":  # the wrong file: no use waiting for it
                raise failures.not_sqlite(self.where(), exc) from exc
            if kind in (None, "unavailable"):
                raise DatabaseUnavailable(
                    f"database {self.where()} is unavailable: cannot connect "
                    f"({failures.one_line(exc)})"
                ) from exc
            raise DatabaseError(
                f"cannot open database {self.where()}: {failures.one_line(exc)}"
            ) from exc

    @contextmanager
    def borrow(self):
        """A pooled connection for the length of the block."""
        with self._lock:
            conn, since = self._idle.pop() if self._idle else (None, 0.0)
        quiet = time.monotonic() - since >= self.idle_check
        if conn is not None and self.dialect == "postgresql" and quiet:
            conn = _alive(conn)
        conn = conn or self.connect()
        try:
            yield conn
        except BaseException as exc:
            close_quietly(conn)
            if self.dialect == "postgresql" and failures.classify(exc) in (
                "unavailable",
                "standby",
            ):
                self._close_idle()  # a restart (or failover) ended or demoted them all
            raise
        with self._lock:
            if len(self._idle) < self.POOL_SIZE:
                self._idle.append((conn, time.monotonic()))
                return
        close_quietly(conn)

    def close(self) -> None:
        self.stop_checkpointer()
        self._close_connections()

    def _close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            close_quietly(conn)

    def _close_connections(self) -> None:
        self._close_idle()
        with self._write_lock:
            writer, self._writer = self._writer, None
        close_quietly(writer)

    def checkpoint_in_background(self) -> Checkpointer | None:
        """SQLite: the connections of this process stop checkpointing the WAL as part of a
        commit (a third of each commit's cost under load, paid while holding the write lock);
        a background thread checkpoints instead until `stop_checkpointer` or `close`. Returns
        the thread's Checkpointer, or None on PostgreSQL and in-memory databases. (A process
        that keeps writing gets one by itself: `statement`.)"""
        if self.dialect != "sqlite" or self.path == ":memory:":
            return None
        if self._checkpointer is None:
            self._start_checkpointer()
        return self._checkpointer

    def _start_checkpointer(self) -> None:
        self.autocheckpoint = False  # first: a connection opened from now on has them off
        self._close_connections()  # these were opened with auto-checkpoints on (not a writer
        # lent out under the write lock: `_checkpoint_behind` switches its own)
        self._checkpointer = Checkpointer(self)

    def stop_checkpointer(self) -> None:
        """Stop the background checkpoints, if any (the thread checkpoints a last time): the
        commits of this process's connections checkpoint again. Not while holding the write
        lock (the thread's last checkpoint takes it)."""
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is None:
            return
        checkpointer.stop()
        self.autocheckpoint, self._writes = True, 0
        self._close_connections()  # these were opened with auto-checkpoints off

    # -- transactions ------------------------------------------------------------------
    @contextmanager
    def transaction(self, conn=None, rows: int = 1):
        """A write transaction on `conn`, or, when none is given, on this process's SQLite writer
        connection (writes queue for it anyway, and one connection keeps its page cache warm:
        a connection that sees another's commit rereads every page it needs) or a pooled
        PostgreSQL connection. `rows`: as `statement` counts writes."""
        if conn is None:
            with self.statement(rows) as own:
                yield from self._transaction(own)
            return
        yield from self._transaction(conn)

    @contextmanager
    def statement(self, rows: int = 1):
        """A connection for writes that each commit on their own (one statement is its own
        transaction: no BEGIN and COMMIT round trips): this process's SQLite writer
        connection, held under the write lock, or a pooled PostgreSQL connection. `rows`: how
        many rows the block writes, roughly (a batch of runs: its size), so that a process
        inserting batches checkpoints in the background from its first batches, as one
        triggering one by one does after 100. (Measured, 40 batches of 500: three stalls of
        34-75 ms in the callers' commits before, two of 28-78 ms after, from the background
        thread's final pass: within this machine's noise.)"""
        if self.dialect != "sqlite":
            with self.borrow() as pooled:
                yield pooled
            return
        with self._write_lock, self._holding():
            writer = self._writer or self.connect()
            self._writer = None  # held by this block (a nested transaction would open another)
            try:
                self._writes += rows
                if self._writes >= BACKGROUND_CHECKPOINTS_AFTER and self.autocheckpoint:
                    self._checkpoint_behind(writer)
                yield writer
            finally:
                if writer.in_transaction:  # the rollback failed: the connection is suspect
                    close_quietly(writer)
                else:
                    self._writer = writer

    def _checkpoint_behind(self, writer) -> None:
        """A process that keeps writing (an application triggering runs, `serve`) stops paying
        for checkpoints in its commits: SQLite's auto-checkpoint copies the WAL back into the
        database and syncs both files in the commit that fills it (1,000 pages), a pause of
        milliseconds for that caller every few hundred writes, and a third of the time of a
        loop of triggers. A background thread (`Checkpointer`) does it instead, stopped by
        `close`. A one-off command never writes enough to need either. Best effort: should
        the switch fail, commits go on checkpointing and it is tried again 100 writes later.
        (Connections lent out meanwhile, and SQLAlchemy's, keep checkpointing in their own
        commits: harmless, a checkpoint is a checkpoint.)"""
        if self.path == ":memory:":
            self.autocheckpoint = False  # nothing to checkpoint: never try again
            return
        try:
            writer.execute("PRAGMA wal_autocheckpoint=0")
            self._start_checkpointer()
        except Exception as exc:  # a broken writer: the statement that follows will say so
            log.debug("background checkpoints not started: %s", exc)
            self.autocheckpoint, self._writes = True, 0

    def _transaction(self, conn):
        with self._write_lock, self._holding():
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

    def replaced(self) -> str | None:
        """SQLite: why the path no longer leads to the file this process opened (deleted, or
        another file put in its place), or None. Connections already open go on writing to the
        old file, unseen by every process that opens the path now, and lost once closed."""
        if self.identity is None:
            return None
        try:
            found = os.stat(self._abspath)
        except FileNotFoundError:
            return "was deleted"
        except OSError:
            return None  # cannot tell (permissions): not this check's business
        if (found.st_dev, found.st_ino) != self.identity:
            return "was replaced by another file"
        return None

    def ensure_same_file(self, what: str) -> None:
        """Raise DatabaseGone when `replaced` says why; `what` names the process ("serve")."""
        gone = self.replaced()
        if gone is not None:
            raise DatabaseGone(
                f"database file {self.path} {gone} while {what} ran: stopping, since what it "
                f"writes now would be lost and what is triggered now it would never see; start "
                "it again to use the file now at that path"
            )

    def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        with self.borrow() as conn:
            conn.execute("SELECT 1").fetchone()

    def server_time(self) -> float | None:
        """PostgreSQL: the server's clock (epoch seconds), to measure skew; None on SQLite."""
        if self.dialect != "postgresql":
            return None
        with self.borrow() as conn:
            return float(conn.execute("SELECT extract(epoch from clock_timestamp())").fetchone()[0])

    @contextmanager
    def write_lock(self):
        """This process's turn to write (SQLite; a no-op on PostgreSQL): held by every write
        transaction, the job store's and the units of work's alike."""
        with self._write_lock, self._holding():
            yield

    def _holding(self) -> _Holding:
        return self._holder

    def writing(self) -> bool:
        """SQLite: whether this thread is inside a write block (a transaction, a unit of work).
        Another write from it would open a second transaction, which waits for the first —
        its own — until the busy timeout: a task's `ctx.log` inside its `ctx.transaction()`
        is deferred instead (`TaskContext`), a `ctx.trigger` there must join the transaction.
        Always False on PostgreSQL, where each connection has its own transaction."""
        return self.dialect == "sqlite" and getattr(self._held, "depth", 0) > 0

    def is_transient(self, exc: BaseException) -> bool:
        """Errors worth waiting out: a locked SQLite file, a full disk, a database that went
        away, and on PostgreSQL a deadlock or a serialization failure (the transaction was
        rolled back; PostgreSQL's manual says to try it again) or a statement canceled by a
        timeout: see `failures`."""
        return failures.is_transient(exc)

    def where(self) -> str:
        """How messages name this database (the path of a file, the redacted URL otherwise)."""
        return self.path if self.dialect == "sqlite" else redact(self.url)

    def translate(self, exc: BaseException) -> DatabaseError | None:
        return failures.translate(
            exc, self.where(), self.path if self.dialect == "sqlite" else None
        )

    def reclaim_space(self) -> None:
        """After a write failed for space: checkpoint the WAL back into the database and truncate
        it (an SQLite WAL that is never checkpointed below its size eats any space freed)."""
        if self.dialect != "sqlite" or self.path == ":memory:":
            return
        try:
            with self._write_lock:
                conn = _connect_sqlite(self.path, True, self.busy_timeout)
                try:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                finally:
                    close_quietly(conn)
        except Exception as exc:
            log.debug("WAL truncate after a full disk failed: %s", exc)


class Checkpointer:
    """Checkpoints an SQLite WAL from its own thread and connection once it passes
    WAL_CHECKPOINT_BYTES. A WAL that nevertheless passes WAL_FORCE_BYTES (other processes
    writing without pause) is checkpointed with this process's writers held off and
    truncated. Processes without a Checkpointer keep SQLite's own auto-checkpoints."""

    def __init__(self, db: Database, interval: float = 0.1):
        self.db = db
        self.interval = interval
        self.wal = db.path + "-wal"
        self._stop = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._force_after = 0.0  # time.monotonic() before which no forced checkpoint is tried
        self._force_pause = 0.0  # seconds the last refused one put off the next
        self.thread = threading.Thread(target=self._loop, name="flowjobs-checkpoint", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.checkpoint()
        self.checkpoint(always=True)
        close_quietly(self._conn)

    def checkpoint(self, always: bool = False) -> None:
        try:
            size = os.stat(self.wal).st_size
        except OSError:
            return
        if size < WAL_CHECKPOINT_BYTES and not always:
            return
        forcing = False  # a forced checkpoint was tried (its failure puts the next off)
        try:
            # Its busy handler waits FORCE_WAIT_S at most: a TRUNCATE checkpoint waits for the
            # readers of older snapshots (a backup, `db copy`, a long report) and holds off
            # every new writer, in every process, while it does — with the database's 30 s
            # busy timeout, one every 0.1 s for as long as such a reader lasted.
            self._conn = self._conn or _connect_sqlite(self.db.path, True, FORCE_WAIT_S)
            if size >= WAL_FORCE_BYTES and time.monotonic() >= self._force_after:
                forcing = True
                with self.db._write_lock:
                    busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                self._forced(refused=bool(busy))
                return
            # Copy the bulk beside the writers, then the few frames they added meanwhile with
            # them held off: a checkpoint that reaches the end lets the next writer rewind the
            # WAL (one that never does leaves the WAL growing while writes go on).
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            with self.db._write_lock:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception as exc:  # a busy or vanished file: try again next round
            log.debug("WAL checkpoint skipped: %s", exc)
            close_quietly(self._conn)
            self._conn = None
            if forcing:
                self._forced(refused=True)

    def _forced(self, refused: bool) -> None:
        """After a forced checkpoint: refused (a reader holds an old snapshot), the next is put
        off 1 s, doubling to a minute, so that writers are held off FORCE_WAIT_S now and then,
        not all the time (passive checkpoints go on meanwhile)."""
        if not refused:
            self._force_pause, self._force_after = 0.0, 0.0
            return
        self._force_pause = min(max(self._force_pause * 2, 1.0), 60.0)
        self._force_after = time.monotonic() + self._force_pause
        log.debug(
            "forced WAL checkpoint refused (a reader holds an old snapshot); next in %gs",
            self._force_pause,
        )

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)


SQLITE_MINIMUM = (3, 35, 0)  # RETURNING (3.35), UPDATE … FROM (3.33), upserts (3.24)


def check_sqlite_version(found: tuple[int, int, int] = sqlite3.sqlite_version_info) -> None:
    """Refuse, in one line, an SQLite library older than flowjobs' statements need: Python
    uses the system's, and RHEL 9 and Debian 11 ship 3.34, Ubuntu 20.04 3.31 (a claim would
    fail there with `near "RETURNING": syntax error`)."""
    if tuple(found) < SQLITE_MINIMUM:
        have = ".".join(map(str, found))
        raise DatabaseError(
            f"this Python uses SQLite {have}; flowjobs needs {'.'.join(map(str, SQLITE_MINIMUM))} "
            "or newer: use a Python built with a newer SQLite (pyenv, uv or python.org builds "
            "bring their own) or a newer operating system, or PostgreSQL"
        )


def _connect_sqlite(
    path: str, autocheckpoint: bool = True, busy_timeout: float = SQLITE_BUSY_TIMEOUT_S
) -> sqlite3.Connection:
    check_sqlite_version()
    if path != ":memory:":
        problem = failures.unusable_path(path)
        if problem:
            raise DatabaseError(f"cannot open database {path}: {problem}")
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    # A new database gets 2 KB pages (SQLite's default is 4 KB; an existing file keeps its
    # own). A trigger, a claim or a finish changes a few rows in several B-trees, and every
    # page it touches is written whole to the WAL: half the page, half the bytes written and
    # checkpointed. Measured, 4 interleaved rounds: trigger one by one 5,344 → 6,123/s, drain
    # at concurrency 1 3,711 → 4,166/s, 1 × 10 7,446 → 7,809/s, 4 × 10 6,153 → 6,900/s
    # (docs/benchmarks.md, session 12). Set before journal_mode, which writes the header.
    conn.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    if not autocheckpoint:
        conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def _connect_postgresql(conninfo: str, autocommit: bool = True):
    import psycopg

    # Keepalives: a worker cut off by a partition notices within ~30 s instead of hanging in a
    # statement until the kernel gives up on the connection (minutes).
    conn = psycopg.connect(
        conninfo,
        autocommit=autocommit,
        connect_timeout=10,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
        tcp_user_timeout=30_000,
    )
    # Every statement is written for READ COMMITTED: a claim skips locked rows and sees what
    # committed since, a fenced finish updates the row as it is now. A role or database set
    # to REPEATABLE READ or SERIALIZABLE would fail them with "could not serialize access"
    # again and again, so the session says which level it needs, whatever the default.
    try:
        conn.execute(READ_COMMITTED)
        if not autocommit:
            conn.commit()  # a SET in a transaction rolled back later would be undone
    except BaseException:
        close_quietly(conn)
        raise
    return conn


READ_COMMITTED = "SET default_transaction_isolation = 'read committed'"


def _alive(conn):
    """`conn` if it still answers, else None (closed): a PostgreSQL connection left idle in the
    pool may have been ended meanwhile by the server (`idle_session_timeout`, a restart, an
    administrator) or cut by a proxy or NAT that drops quiet connections; handing it out would
    fail the next statement of a quiet process (`serve` between two webhooks)."""
    try:
        conn.execute("SELECT 1").fetchone()
        return conn
    except Exception:
        close_quietly(conn)
        return None


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def close_quietly(conn) -> None:
    """Close a connection (or nothing), ignoring a failure: a broken connection is done with."""
    if conn is None:
        return
    try:
        conn.close()
    except Exception:
        pass


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///` URL; a URL with options (`?mode=ro`) is refused in one line
    (SQLite would take the whole of it for a file name)."""
    path = url[len("sqlite:///") :]
    if "?" in path:
        raise BadInput(
            f"a SQLite URL takes no options (got {url!r}): write sqlite:///path/to/file.db; "
            "flowjobs sets its own (WAL, busy timeout), and read-only commands never write"
        )
    return path
