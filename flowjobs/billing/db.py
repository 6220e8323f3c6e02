"""SQLAlchemy engine and units of work for the billing tables.

- SQLite: every transaction opens with `BEGIN IMMEDIATE` (the pysqlite driver's own
  transaction handling is switched off), WAL, a busy timeout and foreign keys — the same
  rules as the job store, so a lock upgrade never fails half way through a billing write.
- `unit_of_work(engine, now)` is the seed's `adminTransaction`: one transaction, committed on
  success and rolled back on any exception. `created_at`/`updated_at` are stamped on flush
  with the unit's `now` (the runtime clock), so tests that pin the clock see pinned times.
- Follow-up runs triggered with `session=` join the unit's transaction.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import create_engine, event
from sqlmodel import Session

from flowjobs.store.db import SQLITE_BUSY_TIMEOUT_S


def sqlalchemy_url(url: str) -> str:
    return re.sub(r"^postgresql(\+\w+)?://", "postgresql+psycopg://", url)


def make_engine(url: str, busy_timeout: float = SQLITE_BUSY_TIMEOUT_S):
    url = sqlalchemy_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=20)
    engine = create_engine(url, connect_args={"timeout": busy_timeout, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

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


@contextmanager
def unit_of_work(engine, now: datetime):
    """One transaction; commit on success, roll back on error."""
    session = Session(engine, expire_on_commit=False, autoflush=True)
    session.info["now"] = now
    event.listen(session, "before_flush", _stamp)
    try:
        with session.begin():
            yield session
    finally:
        session.close()
