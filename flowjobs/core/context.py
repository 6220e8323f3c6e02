"""What a task receives besides its payload: `ctx`.

- `ctx.run_id`, `ctx.task_id`, `ctx.attempt`, `ctx.max_attempts`
- `ctx.log.info(...)` etc.: lines stored with the run (and shown by `flowjobs runs show`)
- `ctx.trigger(task, payload, **options)`: a follow-up run, linked as a child of this one
- `with ctx.transaction() as tx:` — the seed's `adminTransaction`: `tx.execute(sql, params)`
  and `tx.trigger(...)` commit together or not at all
- `ctx.canceled`: set when the run is canceled or timed out; long tasks should check it
- `ctx.billing`, `ctx.documents`, `ctx.mailer`, `ctx.settings`: the services a task may use,
  given by whoever composed the worker (`Services`); a worker without them (a test's) raises
  a clear error when a task asks for one
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

_log = logging.getLogger("flowjobs.task")
LOG_RETRY_PAUSE_S = 5.0  # after the database refused a log line, lines wait this long in memory


class RunLogger:
    def __init__(self, ctx: TaskContext):
        self._ctx = ctx

    def _write(self, level: str, message: str, *args) -> None:
        text = message % args if args else str(message)
        ctx = self._ctx
        line = (ctx.run_id, ctx.attempt, ctx.clock.now_ms(), level, text)
        if ctx.store.db.writing() or time.monotonic() < ctx._logs_paused_until:
            # inside the task's own SQLite transaction, or the database was away a moment ago:
            # written after it, or later (each try waits out a busy timeout or a connection)
            ctx._deferred_logs.append(line)
        else:
            ctx._deferred_logs.append(line)
            ctx.flush_or_keep_logs()
        _log.log(
            getattr(logging, level.upper(), logging.INFO),
            "[%s %s#%d] %s",
            ctx.task_id,
            ctx.run_id,
            ctx.attempt,
            text,
            extra={
                "run_id": ctx.run_id,
                "task": ctx.task_id,
                "attempt": ctx.attempt,
                "worker": ctx.worker_id,
            },
        )

    def debug(self, message, *args):
        self._write("debug", message, *args)

    def info(self, message, *args):
        self._write("info", message, *args)

    def warning(self, message, *args):
        self._write("warning", message, *args)

    def error(self, message, *args):
        self._write("error", message, *args)


class Transaction:
    """A database transaction inside a task; follow-up triggers join it."""

    def __init__(self, ctx: TaskContext, conn):
        self._ctx = ctx
        self.dbapi = conn

    def execute(self, sql: str, params: Any = ()):
        return self.dbapi.execute(sql, params)

    def trigger(self, task: str, payload: Any = None, **options):
        return self._ctx.trigger(task, payload, session=self, **options)


_EVENT_LOCK = threading.Lock()


class Services(Protocol):
    """What a task may use beside the job queue (the runtime provides it)."""

    @property
    def settings(self) -> Any: ...  # flowjobs.config.Settings

    @property
    def billing(self) -> Any: ...  # flowjobs.billing.service.Billing

    @property
    def documents(self) -> Any: ...  # a document storage (flowjobs.adapters.storage)

    @property
    def mailer(self) -> Any: ...  # flowjobs.adapters.mailer


class NoServices:
    """The services of a worker composed without any: every use says so."""

    def __getattr__(self, name: str):
        raise RuntimeError(f"this worker was composed without services: a task asked for {name!r}")


@dataclass(slots=True)
class TaskContext:
    run_id: str
    task_id: str
    attempt: int
    max_attempts: int
    client: Any
    store: Any
    clock: Any
    worker_id: str = ""
    services: Services | None = None  # billing, documents, mailer, settings
    crashes: int = 0  # earlier attempts lost to crashes; they do not count against max_attempts
    _canceled: threading.Event | None = field(default=None, repr=False)
    _deferred_logs: list = field(default_factory=list, repr=False)  # see RunLogger._write
    _logs_paused_until: float = field(default=0.0, repr=False)  # time.monotonic()

    def flush_or_keep_logs(self) -> None:
        """`flush_logs`, except that a database away (a restart, a lock past the busy timeout)
        keeps the lines for later — with the outcome at the latest — and pauses the tries for
        a while. It used to fail the task as a crash, and the run did its work again from the
        start."""
        try:
            self.flush_logs()
        except Exception as exc:
            if not self.store.db.is_transient(exc):
                # this line can never be written: it must not hold back the ones after it
                self._deferred_logs.pop(0)
                raise
            self._logs_paused_until = time.monotonic() + LOG_RETRY_PAUSE_S

    def flush_logs(self) -> None:
        """Write the log lines held back while the task was inside an SQLite write transaction,
        or while the database was away (with the times they were logged at): after it, at the
        next line, or when the attempt ends (then, if the database is still away, with the
        attempt's outcome: `Outcome.logs`)."""
        while self._deferred_logs:
            self.store.add_log(*self._deferred_logs[0])  # kept until written
            self._deferred_logs.pop(0)

    @property
    def log(self) -> RunLogger:
        return RunLogger(self)

    @property
    def canceled(self) -> threading.Event:
        """Made on first use (most runs never look): the task and the worker's monitor may ask
        at the same moment, so the first one makes it under a lock."""
        if self._canceled is None:
            with _EVENT_LOCK:
                if self._canceled is None:
                    self._canceled = threading.Event()
        return self._canceled

    @property
    def _services(self) -> Services:
        return self.services if self.services is not None else NoServices()

    @property
    def billing(self) -> Any:
        return self._services.billing

    @property
    def documents(self) -> Any:
        return self._services.documents

    @property
    def mailer(self) -> Any:
        return self._services.mailer

    @property
    def settings(self) -> Any:
        return self._services.settings

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt - self.crashes >= self.max_attempts

    def trigger(self, task: str, payload: Any = None, *, session=None, **options):
        options.setdefault("parent_id", self.run_id)
        self._alone(session, "trigger")
        return self.client.trigger(task, payload, session=session, **options)

    def batch_trigger(self, items, *, session=None):
        for item in items:
            item.parent_id = item.parent_id or self.run_id
        self._alone(session, "batch_trigger")
        return self.client.batch_trigger(items, session=session)

    def _alone(self, session, what: str) -> None:
        if session is None and self.store.db.writing():
            raise RuntimeError(
                f"ctx.{what} inside a transaction of this task on SQLite must join it "
                f"(tx.{what}(…), or session= the unit's session): a write of its own would wait "
                "for the task's transaction until the busy timeout"
            )

    @contextmanager
    def transaction(self):
        with self.store.db.transaction() as conn:
            yield Transaction(self, conn)
        self.flush_or_keep_logs()
