"""A worker's view of its database's health while it rides out an outage.

When a write or a read fails for a reason that passes (the server went away, the SQLite file
is locked by another program, the disk is full), the worker keeps its in-flight tasks running,
keeps their outcomes in memory, and tries again with back-off: 0.5 s doubling to 10 s. This
records the state and logs once per change of state, never once per try, and once every
REMIND_EVERY while it lasts (an outage of an hour is a dozen lines, not thousands; a database
that never takes writes — a replica's URL — is not silence).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("flowjobs.worker")

MIN_WAIT = 0.5
MAX_WAIT = 10.0
REMIND_EVERY = 300.0  # seconds: a long outage (or a target that never takes writes) is said again

_SAYS = {
    "unavailable": "the database is unavailable",
    "locked": "the database file is locked by another program",
    "full": "the database's disk is full",
    "conflict": "transactions keep conflicting with concurrent ones (deadlock or serialization)",
    "canceled": "the database cancels statements (a statement or lock timeout, or an operator)",
    "standby": "the database takes no writes (a standby server, or a failover under way)",
}


class Outage:
    def __init__(
        self,
        classify: Callable[[BaseException], str | None],
        on_full: Callable[[], None] = lambda: None,
        clock=time.monotonic,
    ):
        self._classify = classify
        self._on_full = on_full
        self._clock = clock
        self._lock = threading.Lock()
        self.kind: str | None = None  # None while the database answers
        self.since = 0.0
        self.reminded = 0.0  # when the outage was last said
        self.tries = 0

    @property
    def down(self) -> bool:
        return self.kind is not None

    def failed(self, exc: BaseException) -> float | None:
        """Record a failure. Returns the seconds to wait before trying again, or None when the
        failure is not one that passes (the caller re-raises it)."""
        kind = self._classify(exc)
        if kind not in _SAYS:
            return None
        with self._lock:
            first = self.kind != kind
            now = self._clock()
            if self.kind is None:
                self.since = self.reminded = now
                self.tries = 0
            remind = not first and now - self.reminded >= REMIND_EVERY
            if remind:
                self.reminded = now
            self.kind = kind
            self.tries += 1
            wait = min(MIN_WAIT * 2 ** (self.tries - 1), MAX_WAIT)
        if remind:
            log.warning(
                "%s still, for %.0f s (%s); retrying every %gs",
                _SAYS[kind],
                now - self.since,
                _short(exc),
                MAX_WAIT,
            )
        if first:
            log.warning(
                "%s (%s); running tasks go on, their outcomes are kept and written when it "
                "is back; retrying with back-off up to %gs",
                _SAYS[kind],
                _short(exc),
                MAX_WAIT,
            )
        if kind == "full":
            self._on_full()  # checkpoint and truncate the WAL, so freed space stays free
        return wait

    def ok(self) -> bool:
        """Record a success; True when this ends an outage (logged once)."""
        if self.kind is None:
            return False
        with self._lock:
            kind, self.kind = self.kind, None
            took = self._clock() - self.since
        if kind is not None:
            log.warning("the database is back after %.1fs; resuming", took)
        return kind is not None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
