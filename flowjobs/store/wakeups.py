"""How an idle worker learns that a run may be due, without polling the jobs table.

- PostgreSQL: a connection LISTENs on `flowjobs_runs`; every enqueue NOTIFYs it when its
  transaction commits (`queries` "notify"). The listener reconnects after a failure.
- SQLite: any commit by any process changes the WAL file, so a stat() every few milliseconds
  notices new work at almost no cost (and the wait returns early when the worker's own
  event is set: a slot freed, a stop).
"""

from __future__ import annotations

import logging
import os
import threading
import time

WAL_CHECK = 0.02  # seconds between looks at the SQLite WAL file's modification time

log = logging.getLogger("flowjobs.worker")


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


class Wakeups:
    def __init__(self, db):
        self.db = db
        self._wal_stamp = 0

    def listen(self, wake: threading.Event, stopping: threading.Event) -> None:
        """PostgreSQL: set `wake` on every NOTIFY until `stopping` is set (a daemon thread)."""
        if self.db.dialect != "postgresql":
            return
        threading.Thread(
            target=self._listen, args=(wake, stopping), name="flowjobs-listen", daemon=True
        ).start()

    def _listen(self, wake: threading.Event, stopping: threading.Event) -> None:
        while not stopping.is_set():
            conn = None
            try:
                conn = self.db.connect()
                conn.execute("LISTEN flowjobs_runs")
                while not stopping.is_set():
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        wake.set()
            except Exception as exc:
                log.debug("listener reconnecting after %s", exc)
                time.sleep(1.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass

    def wait(self, seconds: float, wake: threading.Event) -> None:
        """Until `wake` is set or `seconds` pass; on SQLite also until another commit."""
        if self.db.dialect != "sqlite" or self.db.path == ":memory:":
            wake.wait(seconds)
            return
        deadline = time.monotonic() + seconds
        wal = self.db.path + "-wal"
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or wake.is_set():
                return
            time.sleep(min(left, WAL_CHECK))  # cheaper than Event.wait with a timeout
            stamp = _mtime(wal)
            if stamp != self._wal_stamp:
                self._wal_stamp = stamp
                return
