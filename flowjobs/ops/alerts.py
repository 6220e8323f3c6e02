"""Alerts (`[alerts]`): a run failed for good, a schedule slot was missed, a run has waited too
long. Every worker looks (a duty every `[alerts] interval`), and each finding triggers the
`send-alert` task with an idempotency key naming it (`alert:run-failed:<run id>`, …): however
many workers find the same thing, it is one run, so one email and one webhook call.
`send-alert` delivers them (`flowjobs.notifications.alerts`).
"""

from __future__ import annotations

import logging

from flowjobs.notifications.alerts import ALERT_TASK

log = logging.getLogger("flowjobs.alerts")

LOOKBACK_MS = 24 * 3600 * 1000


def find(runtime) -> list[dict]:
    """What deserves an alert now: [{key, kind, subject, text, details}]."""
    settings = runtime.settings.alerts
    now = runtime.clock.now_ms()
    found = []
    if settings.failed_runs:
        found += _failed_runs(runtime, now)
    if settings.missed_slots:
        found += _missed_slots(runtime, now)
    if settings.waiting_over > 0:
        found += _waiting(runtime, now, int(settings.waiting_over * 1000))
    return found


def _failed_runs(rt, now: int) -> list[dict]:
    rows = rt.store.failed_since(now - LOOKBACK_MS, exclude_task=ALERT_TASK, limit=100)
    return [
        {
            "key": f"alert:run-failed:{run_id}",
            "kind": "run_failed",
            "subject": f"Run failed: {task} ({run_id})",
            "text": f"Run {run_id} of {task} failed after {attempt} attempt(s): {error or 'no error recorded'}",
            "details": {"runId": run_id, "task": task, "attempts": attempt, "error": error},
        }
        for run_id, task, error, attempt in rows
    ]


def _missed_slots(rt, now: int) -> list[dict]:
    from flowjobs.core.clock import parse_iso

    late_after = max(2 * rt.settings.scheduler.interval, 60) * 1000
    found = []
    for report in rt.scheduler.health(window_ms=LOOKBACK_MS):
        if report["status"] == "stalled":  # no process fires the newest definition any more
            found.append(
                {
                    "key": f"alert:schedule-stalled:{report['id']}:{report['fired_as']['since']}",
                    "kind": "schedule_stalled",
                    "subject": f"Schedule {report['id']} is fired by no process",
                    "text": report["fix"],
                    "details": {"schedule": report["id"], **report["fired_as"]},
                }
            )
        for slot in report["missing"]:
            if now - parse_iso(slot) > late_after:
                found.append(
                    {
                        "key": f"alert:missed-slot:{report['id']}:{slot}",
                        "kind": "slot_missed",
                        "subject": f"Schedule {report['id']} missed its {slot} slot",
                        "text": f"No run exists for the {slot} slot of schedule {report['id']}: "
                        "was any worker or `flowjobs tick` running?",
                        "details": {"schedule": report["id"], "slot": slot},
                    }
                )
    return found[:100]


def _waiting(rt, now: int, threshold_ms: int) -> list[dict]:
    oldest = rt.store.oldest_due(now - threshold_ms)
    rows = [oldest] if oldest else []
    return [
        {
            "key": f"alert:waiting:{run_id}",
            "kind": "run_waiting",
            "subject": f"Queue {queue}: a run has waited {(now - run_at) // 60000} min",
            "text": f"Run {run_id} of {task} in queue {queue} has been due for {(now - run_at) // 1000} s "
            "without a worker taking it: are the workers running, and enough of them?",
            "details": {
                "queue": queue,
                "runId": run_id,
                "task": task,
                "waitingSeconds": (now - run_at) // 1000,
            },
        }
        for run_id, task, queue, _status, run_at in rows
    ]


def raise_alerts(runtime) -> int:
    """Trigger `send-alert` for each finding (deduplicated by key); returns how many are new."""
    from flowjobs.core.client import TriggerItem

    settings = runtime.settings.alerts
    if not (settings.email or settings.webhook_url):
        return 0
    found = find(runtime)
    if not found:
        return 0
    items = [
        TriggerItem(
            ALERT_TASK,
            {k: v for k, v in f.items() if k != "key"},
            idempotency_key=f["key"],
            idempotency_key_ttl=90 * 86400,
        )
        for f in found
    ]
    results = runtime.client.batch_trigger(items)
    return sum(not r.deduplicated for r in results)
