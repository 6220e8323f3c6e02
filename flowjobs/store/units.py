"""Units of work over the SQLModel tables (billing, webhook inbox, outbound deliveries): the
one SQLAlchemy engine of a database, built on the job store's own connections.

- Connections come from `Database.connect`, so both stacks share one set of pragmas (WAL,
  synchronous=NORMAL, foreign keys, busy timeout, PostgreSQL keepalives), one URL handling
  and one error translation. On SQLite every transaction opens with `BEGIN IMMEDIATE` under
  the process's write lock (`Database.write_lock`), like the job store's: a lock upgrade never
  fails half way, and threads hand the one writer over without SQLite's busy sleeps.
- `Units.unit(now)` is the seed's `adminTransaction`: one transaction, committed on success and
  rolled back on any exception. `created_at`/`updated_at` are stamped on flush with the unit's
  `now` (the runtime clock), so tests that pin the clock see pinned times.
- `Units.dry_run()`: one transaction that every unit joins and that is always rolled back.
- Hooks (`UnitHook`) see each unit open and close — e.g. outbound events are delivered in the
  unit that wrote them — without this module knowing what they do.
- Follow-up runs triggered with `session=` join the unit's transaction (`raw_connection`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Protocol

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool, QueuePool
from sqlmodel import Session

from flowjobs.store.db import Database


class UnitHook(Protocol):
    def opened(self, session: Session) -> None: ...

    def closing(self, session: Session) -> None:
        """Before the unit commits (or, in a dry run, before the next unit joins)."""


def make_engine(db: Database) -> Engine:
    """The SQLAlchemy engine over `db`'s connections."""
    if db.dialect == "postgresql":
        return create_engine(
            "postgresql+psycopg://",
            creator=lambda: db.connect(autocommit=False),
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=20,
        )
    engine = create_engine(
        "sqlite://",
        creator=db.connect,
        poolclass=NullPool if db.path == ":memory:" else QueuePool,
    )

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _stamp(session: Session, _context, _instances) -> None:
    now = session.info.get("now")
    if now is None:
        return
    for obj in session.new:
        if hasattr(obj, "created_at"):
            obj.created_at = obj.created_at or now
            obj.updated_at = obj.updated_at or now
    for obj in session.dirty:
        if hasattr(obj, "updated_at") and session.is_modified(obj, include_collections=False):
            obj.updated_at = now


class Units:
    def __init__(self, db: Database, engine: Engine | None = None):
        self.db = db
        self.engine = engine or make_engine(db)
        self.hooks: list[UnitHook] = []
        self._outer: Session | None = None  # the session every unit joins during a dry run

    @property
    def in_dry_run(self) -> bool:
        return self._outer is not None

    def _session(self, now: datetime) -> Session:
        session = Session(self.engine, expire_on_commit=False, autoflush=True)
        session.info["now"] = now
        event.listen(session, "before_flush", _stamp)
        for hook in self.hooks:
            hook.opened(session)
        return session

    @contextmanager
    def unit(self, now: datetime) -> Iterator[Session]:
        """One transaction; commit on success, roll back on error."""
        if self._outer is not None:
            yield self._outer
            self._closing(self._outer)
            return
        session = self._session(now)
        try:
            with self.db.write_lock(), session.begin():
                yield session
                self._closing(session)
        finally:
            session.close()

    @contextmanager
    def dry_run(self, now: datetime) -> Iterator[Session]:
        """One transaction that every unit joins and that is always rolled back. Not
        thread-safe: for one command at a time."""
        session = self._session(now)
        with self.db.write_lock():
            session.begin()
            self._outer = session
            try:
                yield session
            finally:
                self._outer = None
                session.rollback()
                session.close()

    def _closing(self, session: Session) -> None:
        for hook in self.hooks:
            hook.closing(session)

    def dispose(self) -> None:
        self.engine.dispose()
