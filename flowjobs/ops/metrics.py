"""`GET /metrics`: Prometheus text exposition, computed from the database at each scrape (so
every `flowjobs serve` reports the whole system, whatever worker did the work).

    flowjobs_runs{task,status}                       runs in the jobs table
    flowjobs_attempt_duration_seconds{task,outcome}  histogram of finished attempts
    flowjobs_queue_depth{queue}                      runs due now and waiting for a worker
    flowjobs_oldest_waiting_run_age_seconds{queue}   how long the oldest due run has waited
    flowjobs_schedule_lag_seconds{schedule}          how late the oldest unfired slot is (0 = on time)
    flowjobs_webhook_events{source,status}           the webhook inbox

Every known series is exported, zero when nothing counts (each registered task × each run
status, each task queue, each inbox source × status), so that an alert rule such as
`flowjobs_runs{status="failed"} > 0` or `flowjobs_queue_depth > 100` has a series to watch on
an empty system instead of "no data".
"""

from __future__ import annotations

from flowjobs.store.states import ORDER
from flowjobs.webhooks.models import STATUSES as INBOX_STATUSES

INBOX_SOURCES = ("stripe", "supabase")
BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]


class Collector:
    def __init__(self, runtime):
        self.rt = runtime

    def _tasks(self) -> list[str]:
        return [t.id for t in self.rt.registry.all()]

    def _queues(self) -> set[str]:
        """Every queue a task declares, and the queues workers are configured to take."""
        queues = {t.queue for t in self.rt.registry.all()}
        return queues | {q for q in self.rt.settings.worker.queues if q != "*"}

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        now = self.rt.clock.now_ms()
        store = self.rt.store
        runs = GaugeMetricFamily(
            "flowjobs_runs", "Runs in the jobs table", labels=["task", "status"]
        )
        counts = {(task, status): count for task, status, count in store.count_by_task_status()}
        for task in self._tasks():
            for run_status in ORDER:
                counts.setdefault((task, run_status.value), 0)
        for (task, status), count in sorted(counts.items()):
            runs.add_metric([task, status], count)
        yield runs
        yield self._durations()
        events = GaugeMetricFamily(
            "flowjobs_webhook_events", "Webhook inbox events", labels=["source", "status"]
        )
        inbox = {(source, status): count for source, status, count in store.count_inbox()}
        for source in INBOX_SOURCES:
            for status in INBOX_STATUSES:
                inbox.setdefault((source, status), 0)
        for (source, status), count in sorted(inbox.items()):
            events.add_metric([source, status], count)
        yield events
        depth = GaugeMetricFamily(
            "flowjobs_queue_depth", "Runs due now, waiting for a worker", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "flowjobs_oldest_waiting_run_age_seconds",
            "Wait of the oldest due run",
            labels=["queue"],
        )
        depths = {queue: (due, wait) for queue, due, _, wait in self.rt.store.queue_depths(now)}
        for queue in self._queues():
            depths.setdefault(queue, (0, 0.0))
        for queue, (due, wait) in sorted(depths.items()):
            depth.add_metric([queue], due)
            age.add_metric([queue], wait if due else 0.0)
        yield depth
        yield age
        yield self._lag(now)

    def _durations(self):
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(
            "flowjobs_attempt_duration_seconds",
            "Duration of finished attempts",
            labels=["task", "outcome"],
        )
        rows = self.rt.store.attempt_durations(tuple(b * 1000 for b in BUCKETS))
        for task, outcome, count, total_ms, *cumulative in rows:
            buckets = [(f"{b:g}", int(c)) for b, c in zip(BUCKETS, cumulative)] + [
                ("+Inf", int(count))
            ]
            family.add_metric([task, outcome], buckets, total_ms / 1000)
        return family

    def _lag(self, now: int):
        from prometheus_client.core import GaugeMetricFamily

        from flowjobs import cron

        lag = GaugeMetricFamily(
            "flowjobs_schedule_lag_seconds",
            "How late the oldest unfired slot is",
            labels=["schedule"],
        )
        scheduler = self.rt.scheduler
        states = self.rt.store.schedule_states()
        for schedule in scheduler.schedules.values():
            if not scheduler.enabled(schedule, states):
                continue
            last = (states.get(schedule.id) or {}).get("last_slot")
            late = 0.0
            if last is not None:
                due = cron.slots_between(schedule.cron, schedule.timezone, last, now, limit=1)
                late = (now - due[0]) / 1000 if due else 0.0
            lag.add_metric([schedule.id], max(late, 0.0))
        return lag


def exposition(runtime) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(runtime))
    return generate_latest(registry)
