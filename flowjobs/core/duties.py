"""The worker's periodic duties — scheduler tick, pruner, alerts — driven by the `schedule` package.

They run on one background thread of `flowjobs run-worker` (and are the whole of
`flowjobs run-scheduler`). A duty that raises is logged and runs again at its next time.
"""

from __future__ import annotations

import logging
import threading

import schedule

log = logging.getLogger("flowjobs.duties")


class Duties:
    def __init__(self):
        self.jobs = schedule.Scheduler()
        self._stop = threading.Event()

    def every(self, seconds: float, fn, name: str) -> None:
        self.jobs.every(seconds).seconds.do(self._safe, fn, name)

    @staticmethod
    def _safe(fn, name: str) -> None:
        try:
            fn()
        except Exception:
            log.exception("%s failed; it runs again at its next time", name)

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


def prune_once(runtime) -> int:
    """Delete finished runs past `[retention]` (in batches until none is left)."""
    r = runtime.settings.retention
    now = runtime.clock.now_ms()
    total = 0
    while True:
        deleted = runtime.store.prune(now, now - int(r.completed * 1000), now - int(r.failed * 1000))
        total += deleted
        if deleted == 0:
            return total


def standard_duties(runtime, scheduler: bool = True) -> Duties:
    duties = Duties()
    if scheduler:
        duties.every(runtime.settings.scheduler.interval, runtime.scheduler.tick, "scheduler tick")
    duties.every(runtime.settings.retention.interval, lambda: prune_once(runtime), "pruner")
    alerts = runtime.settings.alerts
    if alerts.email or alerts.webhook_url:
        from flowjobs.alerts import raise_alerts

        duties.every(alerts.interval, lambda: raise_alerts(runtime), "alerts")
    return duties
