"""Cron schedules: exactly one run per slot, however many schedulers tick.

Each slot of schedule S is one run with idempotency key `S:<slot ISO-8601 UTC>`. A tick reads
and locks S's state row (the last enqueued slot) inside one write transaction, enqueues the
due slots per the catch-up policy, and advances the state in the same transaction. Two
schedulers therefore queue one behind the other, and the second finds nothing due; the unique
key is a second guard. No leader election, so no leader to lose.

Catch-up after downtime (slots in (last slot, now]):
  skip    run the newest due slot only if it is at most `[scheduler] grace` late
  latest  run the newest due slot; its lastTimestamp is the last slot that ran (no gap)
  all     run every due slot, oldest first, at most `max_catchup` (the newest ones)
A schedule seen for the first time starts after its most recent slot and catches up nothing.
The payload is Trigger.dev's: timestamp, lastTimestamp, timezone, scheduleId, upcoming (next 5).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowjobs.core import cron
from flowjobs.core.clock import iso
from flowjobs.core.client import TriggerItem
from flowjobs.errors import ConfigError, NotFound

log = logging.getLogger("flowjobs.scheduler")
UPCOMING = 5


class SchedulePayload(BaseModel):
    """What a scheduled task receives (Trigger.dev's schedule payload)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    timestamp: datetime
    last_timestamp: datetime | None = Field(None, alias="lastTimestamp")
    timezone: str = "UTC"
    schedule_id: str = Field(alias="scheduleId")
    upcoming: list[datetime] = []


@dataclass
class Schedule:
    id: str
    task: str
    cron: str
    timezone: str = "UTC"
    payload: dict[str, Any] = field(default_factory=dict)
    catchup: str = "latest"
    max_catchup: int = 24
    enabled: bool = True

    def key(self, slot: int) -> str:
        return f"{self.id}:{iso(slot)}"

    def payload_for(self, slot: int, last: int | None) -> dict:
        return {**self.payload, "timestamp": iso(slot), "lastTimestamp": iso(last), "timezone": self.timezone,
                "scheduleId": self.id, "upcoming": [iso(s) for s in cron.next_slots(self.cron, self.timezone, slot, UPCOMING)]}


def resolve(registry, settings) -> dict[str, Schedule]:
    """Schedules declared on tasks, then `[schedules.<id>]` entries overriding or adding."""
    found: dict[str, Schedule] = {}
    problems = []
    for t in registry.all():
        if t.cron:
            try:
                found[t.id] = Schedule(t.id, t.id, cron.normalise(t.cron), cron.zone(t.timezone).key)
            except ValueError as exc:
                problems.append(f"tasks: task {t.id!r}: {exc}")
    for sid, conf in settings.schedules.items():
        base = found.get(sid)
        values = {k: v for k, v in conf.model_dump().items() if v is not None and v != {}}
        if base is None and ("task" not in values or "cron" not in values):
            problems.append(f"schedules.{sid}: needs `task` and `cron` (no task declares a schedule with this id)")
            continue
        merged = Schedule(**{**(base.__dict__ if base else {"id": sid}), **values})
        if merged.task not in registry:
            problems.append(f"schedules.{sid}.task: unknown task {merged.task!r}")
            continue
        found[sid] = merged
    if problems:
        raise ConfigError(problems)
    return found


@dataclass
class TickResult:
    schedule: str
    slots: list[int]
    run_ids: list[str]


class Scheduler:
    def __init__(self, runtime):
        self.rt = runtime
        self.store = runtime.store
        self.schedules = resolve(runtime.registry, runtime.settings)

    def get(self, schedule_id: str) -> Schedule:
        try:
            return self.schedules[schedule_id]
        except KeyError:
            known = ", ".join(sorted(self.schedules)) or "none"
            raise NotFound(f"no schedule {schedule_id!r} (schedules: {known})") from None

    def enabled(self, schedule: Schedule, states: dict[str, dict]) -> bool:
        override = states.get(schedule.id, {}).get("enabled")
        return schedule.enabled if override is None else bool(override)

    # -- ticking -----------------------------------------------------------------------
    def tick(self, now: int | None = None) -> list[TickResult]:
        """Enqueue every due slot of every enabled schedule."""
        now = self.rt.clock.now_ms() if now is None else now
        states = self.store.schedule_states()
        results = []
        for schedule in self.schedules.values():
            if not self.enabled(schedule, states):
                continue
            try:
                result = self._tick_one(schedule, now)
            except Exception as exc:  # one broken schedule must not stop the others
                log.error("schedule %s: tick failed: %s", schedule.id, exc)
                continue
            if result.slots:
                results.append(result)
        return results

    def _tick_one(self, s: Schedule, now: int) -> TickResult:
        store = self.store
        with store.db.transaction() as conn:
            row = conn.execute(store.sql["schedule_lock"], {"id": s.id}).fetchone()
            if row is None or row[0] is None:
                first = cron.previous_slot(s.cron, s.timezone, now + 1)
                conn.execute(store.sql["schedule_insert"], {"id": s.id, "last_slot": first, "now": now})
                return TickResult(s.id, [], [])
            last = row[0]
            slots = self._due(s, last, now)
            if not slots:
                return TickResult(s.id, [], [])
            items = self._items(s, slots, last, now)
            runs = self.rt.client.batch_trigger(items, session=conn) if items else []
            conn.execute(store.sql["schedule_advance"], {"id": s.id, "last_slot": slots[-1], "now": now})
        return TickResult(s.id, [i.run_at for i in items], [r.id for r in runs])

    def _due(self, s: Schedule, last: int, now: int) -> list[int]:
        keep = s.max_catchup if s.catchup == "all" else 1
        due: deque[int] = deque(maxlen=keep)
        for slot in cron.slots_after(s.cron, s.timezone, last):
            if slot > now:
                break
            due.append(slot)
        return list(due)

    def _items(self, s: Schedule, slots: list[int], last: int, now: int) -> list[TriggerItem]:
        grace_ms = int(self.rt.settings.scheduler.grace * 1000)
        if s.catchup == "skip":
            newest = slots[-1]
            if now - newest > grace_ms:
                return []
            previous = cron.previous_slot(s.cron, s.timezone, newest)
            return [self._item(s, newest, previous)]
        items, previous = [], last
        for slot in slots:
            items.append(self._item(s, slot, previous))
            previous = slot
        return items

    def _item(self, s: Schedule, slot: int, last: int | None) -> TriggerItem:
        return TriggerItem(s.task, s.payload_for(slot, last), idempotency_key=s.key(slot),
                           idempotency_key_ttl=366 * 86400.0, run_at=slot)

    # -- tools -------------------------------------------------------------------------
    def preview(self, schedule_id: str, start: int, end: int, limit: int = 1000) -> list[dict]:
        s = self.get(schedule_id)
        previous = cron.previous_slot(s.cron, s.timezone, start + 1)
        windows = []
        for slot in cron.slots_between(s.cron, s.timezone, start, end, limit=limit):
            windows.append({"lastTimestamp": iso(previous), "timestamp": iso(slot), "key": s.key(slot)})
            previous = slot
        return windows

    def existing(self, s: Schedule) -> dict[str, list[dict]]:
        runs: dict[str, list[dict]] = {}
        for r in self.store.schedule_runs(s.task, s.id):
            runs.setdefault(r["idempotency_key"], []).append(r)
        return runs

    def backfill(self, schedule_id: str, start: int, end: int, dry_run: bool = False, progress=None) -> dict:
        """Enqueue every slot in (start, end] that has no run yet (in batches of 500;
        `progress(n)` is told of each)."""
        s = self.get(schedule_id)
        existing = self.existing(s)
        slots = cron.slots_between(s.cron, s.timezone, start, end, limit=100_000)
        previous = cron.previous_slot(s.cron, s.timezone, slots[0]) if slots else None
        items = []
        for slot in slots:
            if s.key(slot) not in existing:
                items.append(self._item(s, slot, previous))
            previous = slot
        runs = []
        for i in range(0, 0 if dry_run else len(items), 500):
            runs += self.rt.client.batch_trigger(items[i:i + 500])
            if progress:
                progress(len(items[i:i + 500]))
        new = sum(1 for r in runs if not r.deduplicated) if not dry_run else len(items)
        return {"schedule": s.id, "slots": len(slots), "new": new, "existing": len(slots) - new,
                "dry_run": dry_run, "run_ids": [r.id for r in runs if not r.deduplicated]}

    def trigger_now(self, schedule_id: str) -> Any:
        """Run now, keyed as a manual run (`<id>:manual:<now>`), not as a slot."""
        s = self.get(schedule_id)
        now = self.rt.clock.now_ms()
        last = self.store.schedule_states().get(s.id, {}).get("last_slot")
        payload = s.payload_for(now, last)
        return self.rt.client.trigger(s.task, payload, idempotency_key=f"{s.id}:manual:{iso(now)}")

    def set_enabled(self, schedule_id: str, enabled: bool) -> None:
        s = self.get(schedule_id)
        now = self.rt.clock.now_ms()
        self.store.set_schedule_enabled(s.id, enabled, cron.previous_slot(s.cron, s.timezone, now + 1), now)

    def describe(self) -> list[dict]:
        states = self.store.schedule_states()
        now = self.rt.clock.now_ms()
        rows = []
        for s in self.schedules.values():
            last = states.get(s.id, {}).get("last_slot")
            rows.append({"id": s.id, "task": s.task, "cron": s.cron, "timezone": s.timezone,
                         "catchup": s.catchup, "max_catchup": s.max_catchup,
                         "enabled": self.enabled(s, states), "last_slot": iso(last),
                         "next_slots": [iso(x) for x in cron.next_slots(s.cron, s.timezone, now, 3)]})
        return rows

    def health(self, window_ms: int = 86400_000) -> list[dict]:
        """Per schedule over the window: slots that ran, slots missing, slots with >1 run."""
        now = self.rt.clock.now_ms()
        states = self.store.schedule_states()
        report = []
        for s in self.schedules.values():
            state = states.get(s.id)
            since = max(now - window_ms, state["created_at"]) if state else now
            slots = cron.slots_between(s.cron, s.timezone, since, now, limit=100_000)
            runs = self.existing(s)
            ran = [x for x in slots if s.key(x) in runs]
            report.append({"id": s.id, "slots": len(slots), "ran": len(ran),
                           "missing": [iso(x) for x in slots if s.key(x) not in runs],
                           "duplicated": sorted(k for k, v in runs.items() if len(v) > 1 and ":manual:" not in k)})
        return report
