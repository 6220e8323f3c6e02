"""The worker's periodic duties — scheduler tick, pruner, alerts — driven by the `schedule` package.

They run on one background thread of `flowjobs run-worker` (and are the whole of
`flowjobs run-scheduler`). A duty that raises is logged and runs again at its next time. One
that fails because the database is away (locked, full, unreachable) is logged once, in one
line, and once more when it works again: an outage is two lines, not one traceback a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import schedule

from flowjobs.store.failures import is_transient

log = logging.getLogger("flowjobs.duties")


class Duties:
    """Periodic duties, each an `(interval in seconds, fn, name)` entry given by whoever composes
    them (the runtime: scheduler tick, pruner, alerts)."""

    def __init__(self, entries: Iterable[tuple[float, Callable[[], object], str]] = ()):
        self.jobs = schedule.Scheduler()
        self._stop = threading.Event()
        self._waiting: set[str] = set()  # duties that failed on a database outage
        for seconds, fn, name in entries:
            self.every(seconds, fn, name)

    def every(self, seconds: float, fn, name: str) -> None:
        # schedule annotates the interval int; it only builds a timedelta, which takes a float
        self.jobs.every(seconds).seconds.do(self._safe, fn, name)  # type: ignore[arg-type]

    def _safe(self, fn, name: str) -> None:
        try:
            fn()
        except Exception as exc:
            if not is_transient(exc):
                log.exception("%s failed; it runs again at its next time", name)
            elif name not in self._waiting:
                self._waiting.add(name)
                log.warning(
                    "%s waits for the database (%s: %s)",
                    name,
                    type(exc).__name__,
                    (str(exc).strip().splitlines() or [""])[0],
                )
            return
        if name in self._waiting:
            self._waiting.discard(name)
            log.warning("%s runs again: the database is back", name)

    def run(self) -> None:
        self.jobs.run_all()
        while not self._stop.is_set():
            self.jobs.run_pending()
            self._stop.wait(min(max(self.jobs.idle_seconds or 0.05, 0.01), 1.0))

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="flowjobs-duties", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


WORKERS_KEPT_MS = 7 * 86400_000  # rows of workers not seen for a week are deleted
PRUNE_HOLD_S = 0.02  # aim for write transactions this short: a waiting worker gets in soon
PRUNE_REST = 2.0  # after each batch, step aside for twice as long as it took
REJECTED_BATCH = 500  # refused webhook requests per transaction (at most 8 KB each)
PRUNE_BATCH = (50, 5000)  # runs per transaction: the first batch takes the smallest


def prune_once(store, clock, retention, pause: Callable[[float], object] = time.sleep) -> int:
    """Delete finished runs past `retention` ([retention]: completed, failed), refused webhook
    requests past `rejected`, and the rows of workers not seen for a week.

    In batches until none is left, each one transaction sized to take about PRUNE_HOLD_S
    (from the pace of the one before; time spent waiting for the lock counts, so a busy
    database gets smaller batches), with a rest of PRUNE_REST x its time between batches:
    on SQLite, whose one writer lock workers wait for in a sleeping busy handler, back-to-back
    batches would otherwise starve them. Rows that become prunable while it runs wait for the
    next time."""
    now = clock.now_ms()
    store.prune_workers(now - WORKERS_KEPT_MS)
    rejected_before = now - int(retention.rejected * 1000)
    while store.prune_rejected(rejected_before, REJECTED_BATCH) == REJECTED_BATCH:
        pass
    smallest, largest = PRUNE_BATCH
    total, limit = 0, smallest
    while True:
        start = time.monotonic()
        deleted = store.prune(
            now, now - int(retention.completed * 1000), now - int(retention.failed * 1000), limit
        )
        took = time.monotonic() - start
        total += deleted
        if deleted < limit:
            return total
        limit = max(smallest, min(largest, int(deleted / max(took, 1e-6) * PRUNE_HOLD_S)))
        pause(took * PRUNE_REST)
