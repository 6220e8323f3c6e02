"""Cron schedules: exactly one run per slot, however many schedulers tick.

Each slot of schedule S is one run with idempotency key `S:<slot ISO-8601 UTC>`. A tick reads
and locks S's state row (the last enqueued slot) inside one write transaction, enqueues the
due slots per the catch-up policy, and advances the state in the same transaction. Two
schedulers therefore queue one behind the other, and the second finds nothing due; the unique
key is a second guard. No leader election, so no leader to lose. Whether this process fires a
schedule at all, when processes hold different definitions of it (an edited flowjobs.toml), is
decided by `schedule_versions`; the tick makes the write it asks for in the same transaction.

Catch-up after downtime (slots in (last slot, now]):
  skip    run the newest due slot only if it is at most `[scheduler] grace` late
  latest  run the newest due slot; its lastTimestamp is the last slot that ran (no gap)
  all     run every due slot, oldest first, at most `max_catchup` (the newest ones)
A schedule seen for the first time starts after its most recent slot and catches up nothing.
The payload is Trigger.dev's: timestamp, lastTimestamp, timezone, scheduleId, upcoming (next 5).

Windows tile what *succeeded*. A run's window (lastTimestamp -> timestamp) is covered once the
run completed and every run it triggered completed; a run that failed, was canceled or expired
(or completed while a run it triggered did not) leaves its window lost. The next slot's window
reaches back to the start of the oldest lost stretch no other run covers (at most MAX_LOOKBACK,
or two slots, back; never across time no run was given). A run still unfinished is counted on;
if it then fails, the tick after reaches back over it. Windows may overlap (the fan-outs are
idempotent by key); they never leave a gap that could have been closed. What cannot be closed
that way is reported by `health` with its fix, and alerted.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowjobs import cron
from flowjobs.core.client import TriggerItem
from flowjobs.core.clock import iso, parse_iso
from flowjobs.core.schedule_versions import Standing, Versions, lease_ms, source_of, written_at
from flowjobs.errors import (
    BadInput,
    ConfigError,
    DatabaseError,
    ExitStatus,
    FlowjobsError,
    PayloadInvalid,
    UnknownSchedule,
)
from flowjobs.store.states import UNSUCCESSFUL, WAITING, RunStatus

log = logging.getLogger("flowjobs.scheduler")
UPCOMING = 5
# How far back the next window may reach over runs that did not succeed: 7 days, or the two
# slots before it when the schedule is slower than that. Older gaps are reported, not closed.
MAX_LOOKBACK_MS = 7 * 86400_000
DUE_WALK = 1000  # slots a tick walks forward from the last one before it counts back from now
DUE_BACK = 100  # ...when it keeps at most this many (each slot counted back is a cron search)
KEY_TTL = 366 * 86400.0
BACKFILL_MAX = 100_000  # slots one backfill enqueues; a longer range is refused, never cut short
MANUAL = "manual:"


class SchedulePayload(BaseModel):
    """What a scheduled task receives (Trigger.dev's schedule payload)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    timestamp: datetime
    last_timestamp: datetime | None = Field(None, alias="lastTimestamp")
    timezone: str = "UTC"
    schedule_id: str = Field(alias="scheduleId")
    upcoming: list[datetime] = []


class EnqueueFailed(FlowjobsError):
    """`tick` / `run-scheduler`: a schedule's due slot could not be enqueued."""

    exit_status = ExitStatus.FAILURE


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
    written_at: int = 0  # epoch ms its source was last written (its version); 0: unknown

    def key(self, slot: int) -> str:
        return f"{self.id}:{iso(slot)}"

    def payload_for(self, slot: int, last: int | None, ahead: list[int] | None = None) -> dict:
        """`ahead`: the slots after `slot` where the caller has them (a backfill's, a catch-up's
        list): each lookup of the next slots starts a cron iterator hours back (DST folds), a
        few milliseconds for a per-minute schedule — a backfill of 10,000 slots took a minute."""
        upcoming = ahead[:UPCOMING] if ahead is not None and len(ahead) >= UPCOMING else None
        if upcoming is None:
            upcoming = cron.next_slots(self.cron, self.timezone, slot, UPCOMING)
        return {
            **self.payload,
            "timestamp": iso(slot),
            "lastTimestamp": iso(last),
            "timezone": self.timezone,
            "scheduleId": self.id,
            "upcoming": [iso(s) for s in upcoming],
        }

    def previous(self, slot: int) -> int | None:
        return cron.previous_slot(self.cron, self.timezone, slot)

    def definition(self) -> str:
        """What decides the schedule's slots and their runs, as canonical JSON (stored, and
        compared between scheduler processes: `schedule_versions.Versions.standing`)."""
        return json.dumps(
            {
                "task": self.task,
                "cron": self.cron,
                "timezone": self.timezone,
                "payload": self.payload,
                "catchup": self.catchup,
                "max_catchup": self.max_catchup,
                "enabled": self.enabled,
            },
            sort_keys=True,
            separators=(",", ":"),
        )


@dataclass
class WindowRun:
    """One run of a schedule (a slot's, or a manual one) and the window it was given."""

    id: str
    key: str
    status: str
    start: int  # lastTimestamp
    end: int  # timestamp: the slot, or the time of a manual run
    manual: bool
    outcome: str  # succeeded | pending | lost (the run, or a run it triggered, did not succeed)


SAMPLE_AFTER = 946684800000  # 2000-01-01: any instant will do to build a sample payload


def _check_payload(registry, s: Schedule) -> str | None:
    """Why the schedule's task cannot take its payload, or None."""
    from flowjobs.core.client import validate_payload

    slot = cron.next_slots(s.cron, s.timezone, SAMPLE_AFTER, 1)[0]
    try:
        validate_payload(registry.get(s.task), s.payload_for(slot, s.previous(slot)))
    except PayloadInvalid as exc:
        return (
            f"task {s.task!r} rejects the schedule payload ({exc}); a scheduled task declares "
            "payload=flowjobs.core.scheduler.SchedulePayload or a model that accepts its fields"
        )
    return None


def resolve(registry, settings) -> dict[str, Schedule]:
    """Schedules declared on tasks, then `[schedules.<id>]` entries overriding or adding; each
    checked against its task's payload model (a schedule that could never run is refused)."""
    found: dict[str, Schedule] = {}
    problems = []
    for t in registry.all():
        if t.cron:
            try:
                found[t.id] = Schedule(
                    t.id,
                    t.id,
                    cron.normalise(t.cron),
                    cron.zone(t.timezone).key,
                    written_at=written_at(source_of(t.fn)),
                )
            except ValueError as exc:
                problems.append(f"tasks: task {t.id!r}: {exc}")
    configured = set()
    file_written = written_at(getattr(settings, "config_file", None))
    for declared in found.values():  # the file confirms (or overrides) what the code declares:
        # removing an override from it must make the declared definition the newest again
        declared.written_at = max(declared.written_at, file_written)
    for sid, conf in settings.schedules.items():
        base = found.get(sid)
        values = {k: v for k, v in conf.model_dump().items() if v is not None and v != {}}
        if base is None and ("task" not in values or "cron" not in values):
            problems.append(
                f"schedules.{sid}: needs `task` and `cron` (no task declares a schedule with this id)"
            )
            continue
        merged = Schedule(**{**(base.__dict__ if base else {"id": sid}), **values})
        merged.written_at = max(merged.written_at, file_written)
        if "max_catchup" in values and merged.catchup != "all":  # it was silently ignored
            log.warning(
                'schedules.%s.max_catchup is used only with catchup = "all" (this schedule has '
                'catchup = "%s"); it has no effect',
                sid,
                merged.catchup,
            )
        if merged.task not in registry:
            near = difflib.get_close_matches(merged.task, [t.id for t in registry.all()], 3)
            hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            problems.append(f"schedules.{sid}.task: unknown task {merged.task!r}{hint}")
            found.pop(sid, None)
            continue
        found[sid] = merged
        configured.add(sid)
    for sid, s in found.items():
        why = _check_payload(registry, s)
        if why:
            problems.append(
                f"schedules.{sid}: {why}"
                if sid in configured
                else f"tasks: task {sid!r}: its schedule: {why}"
            )
    if problems:
        raise ConfigError(problems)
    return found


def _override(stored) -> bool | None:
    return None if stored is None else bool(stored)


def raise_enqueue_failures(failures: dict[str, BaseException]) -> None:
    """Raise when a schedule failed to enqueue: the database's own error (exit 4, 5, 6) when
    only the database failed (it says why), else `EnqueueFailed` naming each schedule."""
    if not failures:
        return
    if all(is_database_failure(exc) for exc in failures.values()):
        raise next(iter(failures.values()))
    raise EnqueueFailed(
        "; ".join(f"schedule {sid} failed to enqueue: {exc}" for sid, exc in failures.items())
    )


@dataclass
class TickResult:
    schedule: str
    slots: list[int]
    run_ids: list[str]


def is_database_failure(exc: BaseException) -> bool:
    """A failure of the database (waited out by the loops), not of the schedule itself."""
    return isinstance(exc, DatabaseError) or type(exc).__module__.split(".")[0] in (
        "sqlite3",
        "psycopg",
    )


def find(schedules: dict[str, Schedule], schedule_id: str) -> Schedule:
    """The schedule `schedule_id` of `schedules` (as `resolve` returns them), or NotFound
    naming the known ones. Needs no database."""
    try:
        return schedules[schedule_id]
    except KeyError:
        known = ", ".join(sorted(schedules)) or "none"
        raise UnknownSchedule(f"no schedule {schedule_id!r} (schedules: {known})") from None


class Scheduler:
    def __init__(
        self,
        store,
        client,
        schedules: dict[str, Schedule],
        clock,
        *,
        grace: float = 60.0,
        alert_task: str | None = None,
        interval: float = 1.0,
    ):
        """`schedules` as `resolve` returns them; `grace` (seconds): how late a slot may still
        be enqueued under the `skip` policy ([scheduler] grace); `alert_task`: the task that
        raises an alert (lost windows, failing schedules), or None when alerts are off;
        `interval` (seconds): how often this process ticks ([scheduler] interval), which
        sets how long a definition may go unticked before it is reported stalled."""
        self.store = store
        self.client = client
        self.clock = clock
        self.schedules = schedules
        self.grace_ms = int(grace * 1000)
        self.alert_task = alert_task
        # whose definition of each schedule stands (this process's, or a newer one's)
        self.versions = Versions(clock.now_ms(), lease_ms(interval))
        self.failures: dict[str, BaseException] = {}  # schedule id -> why its last tick failed
        self._notices: list[dict] = []  # alerts found inside a tick, raised after it

    def get(self, schedule_id: str) -> Schedule:
        return find(self.schedules, schedule_id)

    def enabled(self, schedule: Schedule, states: dict[str, dict]) -> bool:
        override = states.get(schedule.id, {}).get("enabled")
        return schedule.enabled if override is None else bool(override)

    # -- ticking -----------------------------------------------------------------------
    def tick(self, now: int | None = None) -> list[TickResult]:
        """Enqueue every due slot of every enabled schedule. A schedule that fails is logged
        (once, until it recovers), alerted, and kept in `failures`; the others go on."""
        now = self.clock.now_ms() if now is None else now
        states = self.store.schedule_states()
        results = []
        failures: dict[str, BaseException] = {}
        for schedule in self.schedules.values():
            enabled = self.enabled(schedule, states)
            if not enabled and not self.versions.must_define(
                schedule, states.get(schedule.id), self.clock.now_ms()
            ):
                continue
            try:
                result = self._tick_one(schedule, now, enabled)
            except Exception as exc:  # one broken schedule must not stop the others
                failures[schedule.id] = exc
                if self.store.db.is_transient(exc):
                    # the database, not the schedule (an SQLite lock past the busy timeout): a
                    # wait, said once, and no alert (it was an ERROR and an alert naming a slot
                    # not yet due); the callers tick again (`is_database_failure`)
                    if schedule.id not in self.failures:
                        log.warning(
                            "schedule %s: tick waits for the database (%s); its due slots are "
                            "enqueued once it answers",
                            schedule.id,
                            (str(exc).strip().splitlines() or [type(exc).__name__])[0],
                        )
                    continue
                if schedule.id in self.failures:
                    log.debug("schedule %s: tick failed again: %s", schedule.id, exc)
                else:
                    log.error(
                        "schedule %s: tick failed (its due slot is not enqueued): %s",
                        schedule.id,
                        exc,
                    )
                self._notices.append(self._enqueue_failed_alert(schedule, states, now, exc))
                continue
            if schedule.id in self.failures:
                log.warning("schedule %s: enqueues again", schedule.id)
            if result.slots:
                results.append(result)
        self.failures = failures
        self._raise_notices()
        return results

    def _tick_one(self, s: Schedule, now: int, enabled: bool = True) -> TickResult:
        store = self.store
        with store.db.transaction() as conn:
            row = conn.execute(store.sql["schedule_lock"], {"id": s.id}).fetchone()
            if row is None:  # made, then locked: a concurrent first tick waits for this one
                conn.execute(store.sql["schedule_touch"], {"id": s.id, "now": now})
                row = conn.execute(store.sql["schedule_lock"], {"id": s.id}).fetchone()
            # this process's definition stored (or said to be still there) when it stands
            stored, at, seen = (row[1], row[2], row[3]) if row is not None else (None,) * 3
            part = self.versions.take_part(s, stored, at, seen, self.clock.now_ms())
            if part.write is not None:
                conn.execute(store.sql[part.write], part.params)
            if not part.fires or not enabled:
                return TickResult(s.id, [], [])
            if row is None or row[0] is None:
                # first sight (or a state an older flowjobs left NULL: the insert fills it in):
                # from the last slot, or from now when none is within the search's reach
                first = cron.previous_slot(s.cron, s.timezone, now + 1)
                first = now if first is None else first
                conn.execute(
                    store.sql["schedule_insert"], {"id": s.id, "last_slot": first, "now": now}
                )
                return TickResult(s.id, [], [])
            last = row[0]
            slots = self._due(s, last, now)
            if not slots:
                return TickResult(s.id, [], [])
            items = self._items(s, slots, last, now, conn)
            runs = self.client.batch_trigger(items, session=conn) if items else []
            conn.execute(
                store.sql["schedule_advance"], {"id": s.id, "last_slot": slots[-1], "now": now}
            )
        # every item of a schedule runs at its slot (`_item`)
        slots_run = [i.run_at for i in items if isinstance(i.run_at, int)]
        return TickResult(s.id, slots_run, [r.id for r in runs])

    def _due(self, s: Schedule, last: int, now: int) -> list[int]:
        keep = s.max_catchup if s.catchup == "all" else 1
        due: deque[int] = deque(maxlen=keep)
        for i, slot in enumerate(cron.slots_after(s.cron, s.timezone, last)):
            if slot > now:
                break
            due.append(slot)
            if i == DUE_WALK and keep <= DUE_BACK:  # a long pause: count back from now
                return Scheduler._newest(s, last, now, keep)
        return list(due)

    @staticmethod
    def _newest(s: Schedule, last: int, now: int, keep: int) -> list[int]:
        """The newest `keep` slots in (last, now], found backwards from now: walking forward
        from `last` over every slot missed took seconds inside the tick's transaction (a
        per-minute schedule re-enabled after 90 days: 3.5 s)."""
        found: list[int] = []
        before = now + 1
        while len(found) < keep:
            slot = cron.previous_slot(s.cron, s.timezone, before)
            if slot is None or slot <= last:
                break
            found.append(slot)
            before = slot
        return found[::-1]

    def _items(
        self, s: Schedule, slots: list[int], last: int, now: int, conn=None
    ) -> list[TriggerItem]:
        """The runs of the due slots (a slot that already has a run, e.g. a backfilled one, is
        kept as it is). The first window starts where the policy says (the previous slot for
        `skip`, the last enqueued slot otherwise), or further back, at the start of the oldest
        stretch that runs did not succeed in and no other run covers (see `_reach`)."""
        if s.catchup == "skip":
            newest = slots[-1]
            if now - newest > self.grace_ms:
                return []
            # the slot before, or (none in ~2 years: a leap-day cron) the last enqueued slot
            prior = s.previous(newest)
            slots, ordinary = [newest], (prior if prior is not None else last)
        else:
            ordinary = last
        floor = self._floor(s, slots[0])
        runs = self._window_runs(s, min(floor, ordinary), slots[-1], conn)
        taken = {r.end for r in runs if not r.manual and r.end >= slots[0]}  # e.g. by a backfill
        before = [r for r in runs if r.end < slots[0]]
        start, losers = self._reach(s, slots[0], ordinary, before, floor)
        self._notice_lost(s, slots[0], start, floor, losers)
        items, previous = [], start
        for i, slot in enumerate(slots):
            if slot not in taken:
                items.append(self._item(s, slot, previous, slots[i + 1 : i + 1 + UPCOMING]))
            previous = slot
        return items

    def _item(
        self, s: Schedule, slot: int, last: int | None, ahead: list[int] | None = None
    ) -> TriggerItem:
        return TriggerItem(
            s.task,
            s.payload_for(slot, last, ahead),
            idempotency_key=s.key(slot),
            idempotency_key_ttl=KEY_TTL,
            run_at=slot,
        )

    # -- windows -----------------------------------------------------------------------
    def _floor(self, s: Schedule, slot: int) -> int:
        """The earliest start a window ending at `slot` may reach back to (a slot)."""
        week = s.previous(slot - MAX_LOOKBACK_MS + 1)
        before = s.previous(slot)
        two = s.previous(before) if before is not None else None
        found = [x for x in (week, two) if x is not None]
        return min(found) if found else slot - MAX_LOOKBACK_MS

    def _window_runs(self, s: Schedule, low: int, high: int, conn=None) -> list[WindowRun]:
        """The schedule's runs (slot and manual) whose window ends in [low, high]."""
        params = {
            "task": s.task,
            "low": f"{s.id}:{iso(low)}",
            "high": f"{s.id}:{iso(high)}",
            "manual_low": f"{s.id}:{MANUAL}{iso(low)}",
            "manual_high": f"{s.id}:{MANUAL}{iso(high)}",
        }
        rows = self.store.window_runs(params, conn)
        runs = []
        for run_id, key, status, payload, children_lost, children_pending in rows:
            stamp = key[len(s.id) + 1 :]
            manual = stamp.startswith(MANUAL)
            try:
                end = parse_iso(stamp.removeprefix(MANUAL))
                start = (json.loads(payload) or {}).get("lastTimestamp")
                start = parse_iso(start) if start else s.previous(end)
            except (ValueError, TypeError, AttributeError):
                continue  # not a key this scheduler wrote
            if start is None:
                start = end
            if status in UNSUCCESSFUL or (status == RunStatus.COMPLETED and children_lost):
                outcome = "lost"
            elif status == RunStatus.COMPLETED and not children_pending:
                outcome = "succeeded"
            else:
                outcome = "pending"
            runs.append(WindowRun(run_id, key, status, start, end, manual, outcome))
        return sorted(runs, key=lambda r: (r.end, r.key, r.id))

    @staticmethod
    def _gaps(runs: list[WindowRun], floor: int) -> list[tuple[int, int]]:
        """Time from `floor` on inside the windows of runs that did not succeed which no other
        run covers, succeeded or still unfinished (an unfinished run is expected to cover its
        window; if it ends without success, the tick after that reaches back over it)."""
        gaps = _merge([(max(r.start, floor), r.end) for r in runs if r.outcome == "lost"])
        for cut in _merge([(r.start, r.end) for r in runs if r.outcome != "lost"]):
            gaps = [piece for g in gaps for piece in _minus(g, cut)]
        return gaps

    def _reach(
        self, s: Schedule, slot: int, ordinary: int, runs: list[WindowRun], floor: int
    ) -> tuple[int, list[tuple[WindowRun, int]]]:
        """Where the window ending at `slot` starts: `ordinary`, or earlier, at the start of
        the oldest gap since `floor`; and each run that lost time, with where its loss starts.
        It never reaches across time no run was ever given (skipped by the `skip` policy, or
        before the schedule was first seen): only over the windows that lead up to `ordinary`."""
        floor = max(floor, _stretch_start(runs, ordinary))
        gaps = self._gaps(runs, floor)
        if not gaps:
            return ordinary, []
        losers = []
        for r in runs:
            if r.outcome == "lost":
                starts = [max(a, r.start) for a, b in gaps if a < r.end and b > r.start]
                if starts:
                    losers.append((r, min(starts)))
        return min(ordinary, gaps[0][0]), losers

    # -- alerts ------------------------------------------------------------------------

    def _notice_lost(
        self, s: Schedule, slot: int, start: int, floor: int, losers: list[tuple[WindowRun, int]]
    ) -> None:
        """An alert per run whose window was not covered, saying whether this slot covers it."""
        for r, lost_from in losers:
            what = f"slot {iso(r.end)}" if not r.manual else f"manual run of {iso(r.end)}"
            covered = start <= lost_from
            if covered:
                outcome = (
                    f"The run of slot {iso(slot)} reaches back to {iso(start)} and covers it; "
                    "`flowjobs schedules health` shows whether it succeeds."
                )
            else:
                outcome = (
                    f"The run of slot {iso(slot)} does not reach back that far (its window starts at "
                    f"{iso(start)}); fix: flowjobs schedules trigger {s.id} --since {iso(lost_from)}"
                )
            if r.start < floor:
                outcome += (
                    f" Its time before {iso(floor)} is beyond the look-back; if no other run covered it, "
                    f"fix: flowjobs schedules trigger {s.id} --since {iso(r.start)}"
                )
            self._notices.append(
                {
                    "key": f"alert:window-lost:{r.key}:{r.id}",
                    "kind": "schedule_window_lost",
                    "subject": f"Schedule {s.id}: the window of its {what} was lost ({r.status})",
                    "text": (
                        f"Run {r.id} of schedule {s.id} ({what}, window {iso(r.start)} -> {iso(r.end)}) ended "
                        f"{r.status}{' but a run it triggered did not' if r.status == RunStatus.COMPLETED else ''}, "
                        f"so its window was not covered. {outcome}"
                    ),
                    "details": {
                        "schedule": s.id,
                        "runId": r.id,
                        "status": r.status,
                        "from": iso(r.start),
                        "to": iso(r.end),
                        "coveredBy": iso(slot) if covered else None,
                    },
                }
            )

    def _enqueue_failed_alert(
        self, s: Schedule, states: dict, now: int, exc: BaseException
    ) -> dict:
        last = (states.get(s.id) or {}).get("last_slot")
        due = cron.slots_between(s.cron, s.timezone, last, now, limit=1) if last is not None else []
        slot = iso(due[0]) if due else iso(now - now % 60000)
        return {
            "key": f"alert:enqueue-failed:{s.id}:{slot}",
            "kind": "schedule_enqueue_failed",
            "subject": f"Schedule {s.id} failed to enqueue its {slot} slot",
            "text": (
                f"Schedule {s.id} (task {s.task}) could not enqueue its {slot} slot: {exc}. "
                "Its ticks are retried; `flowjobs tick` exits 1 until this is fixed."
            ),
            "details": {"schedule": s.id, "task": s.task, "slot": slot, "error": str(exc)},
        }

    def _raise_notices(self) -> None:
        notices, self._notices = self._notices, []
        if not notices or not self.alert_task:
            return
        items = [
            TriggerItem(
                self.alert_task,
                {k: v for k, v in n.items() if k != "key"},
                idempotency_key=n["key"],
                idempotency_key_ttl=90 * 86400,
            )
            for n in notices
        ]
        try:
            self.client.batch_trigger(items)
        except Exception as exc:  # the database is down (the failure being alerted?): next tick
            (log.debug if is_database_failure(exc) else log.error)(
                "scheduler alerts could not be raised: %s", exc
            )

    # -- tools -------------------------------------------------------------------------
    def preview(self, schedule_id: str, start: int, end: int, limit: int = 1000) -> list[dict]:
        s = self.get(schedule_id)
        previous = cron.previous_slot(s.cron, s.timezone, start + 1)
        windows = []
        for slot in cron.slots_between(s.cron, s.timezone, start, end, limit=limit):
            windows.append(
                {"lastTimestamp": iso(previous), "timestamp": iso(slot), "key": s.key(slot)}
            )
            previous = slot
        return windows

    def existing(self, s: Schedule) -> dict[str, list[dict]]:
        runs: dict[str, list[dict]] = {}
        for r in self.store.schedule_runs(s.task, s.id):
            runs.setdefault(r["idempotency_key"], []).append(r)
        return runs

    def backfill_slots(self, schedule_id: str, start: int, end: int) -> list[int]:
        """The slots in (start, end] a backfill enqueues; BadInput past BACKFILL_MAX (it used
        to stop at the limit and say nothing)."""
        s = self.get(schedule_id)
        slots = cron.slots_between(s.cron, s.timezone, start, end, limit=BACKFILL_MAX + 1)
        if len(slots) > BACKFILL_MAX:
            raise BadInput(
                f"(--from, --to] holds more than {BACKFILL_MAX:,} slots of {s.id}; backfill at "
                f"most {BACKFILL_MAX:,} at a time: split the range"
            )
        return slots

    def backfill(
        self,
        schedule_id: str,
        start: int,
        end: int,
        dry_run: bool = False,
        progress=None,
        slots: list[int] | None = None,
    ) -> dict:
        """Enqueue every slot in (start, end] that has no run yet (in batches of 500;
        `progress(n)` is told of each; `slots`: `backfill_slots`' answer, when the caller has
        it). A slot whose run failed keeps it: the next slot's window reaches back over it, or
        `trigger --since` covers it (see `health`)."""
        s = self.get(schedule_id)
        existing = self.existing(s)
        if slots is None:
            slots = self.backfill_slots(schedule_id, start, end)
        previous = cron.previous_slot(s.cron, s.timezone, slots[0]) if slots else None
        items = []
        for i, slot in enumerate(slots):
            if s.key(slot) not in existing:
                items.append(self._item(s, slot, previous, slots[i + 1 : i + 1 + UPCOMING]))
            previous = slot
        runs = []
        for i in range(0, 0 if dry_run else len(items), 500):
            runs += self.client.batch_trigger(items[i : i + 500])
            if progress:
                progress(len(items[i : i + 500]))
        new = sum(1 for r in runs if not r.deduplicated) if not dry_run else len(items)
        return {
            "schedule": s.id,
            "slots": len(slots),
            "new": new,
            "existing": len(slots) - new,
            "dry_run": dry_run,
            "run_ids": [r.id for r in runs if not r.deduplicated],
        }

    def covered_until(self, s: Schedule, at: int) -> int | None:
        """Where a window ending at `at` would start: the end of the last covered window when
        runs after it did not succeed (within the look-back), else the last enqueued slot."""
        last = self.store.schedule_states().get(s.id, {}).get("last_slot")
        ordinary = last if last is not None else s.previous(at)
        if ordinary is None:
            return None
        floor = self._floor(s, at)
        runs = [r for r in self._window_runs(s, min(floor, ordinary), at) if r.end < at]
        return self._reach(s, at, ordinary, runs, floor)[0]

    def trigger_now(self, schedule_id: str, since: int | None = None) -> Any:
        """Run now, keyed as a manual run (`<id>:manual:<now>`), not as a slot. Its window
        starts at `since`, by default where the next slot's would (see `covered_until`)."""
        s = self.get(schedule_id)
        now = self.clock.now_ms()
        if since is not None and since >= now:
            from flowjobs.errors import BadInput

            raise BadInput(f"--since must be before now ({iso(now)})")
        last = since if since is not None else self.covered_until(s, now)
        payload = s.payload_for(now, last)
        return self.client.trigger(s.task, payload, idempotency_key=f"{s.id}:{MANUAL}{iso(now)}")

    def set_enabled(self, schedule_id: str, enabled: bool) -> None:
        s = self.get(schedule_id)
        now = self.clock.now_ms()
        self.store.set_schedule_enabled(
            s.id, enabled, cron.previous_slot(s.cron, s.timezone, now + 1), now
        )

    def describe(self) -> list[dict]:
        states = self.store.schedule_states()
        now = self.clock.now_ms()
        rows = []
        for s in self.schedules.values():
            last = states.get(s.id, {}).get("last_slot")
            rows.append(
                {
                    "id": s.id,
                    "task": s.task,
                    "cron": s.cron,
                    "timezone": s.timezone,
                    "catchup": s.catchup,
                    "max_catchup": s.max_catchup,
                    "enabled": self.enabled(s, states),
                    # set by `schedules enable|disable`: it overrides `enabled` in the config
                    "enabled_override": _override(states.get(s.id, {}).get("enabled")),
                    "last_slot": iso(last),
                    "next_slots": [iso(x) for x in cron.next_slots(s.cron, s.timezone, now, 3)],
                    "fired_as": self.versions.fired_as(s, states),
                }
            )
        return rows

    def health(self, window_ms: int = 86400_000) -> list[dict]:
        """Per schedule over the window: slots that ran (their run was started by a worker, or
        ended), slots whose run waits for a worker (`queued`: not started yet, so not counted
        as ran), slots missing, slots with >1 run, slots whose run did not succeed, and the time no succeeded run covers (`lost`), each
        with what closes it: the next slot, or the fix to run. `status`: ok, recovering, lost,
        paused (disabled, nothing lost; its slots are not counted missing), superseded (a newer
        configuration defines it: its slots are not this one's to miss), or stalled (superseded,
        and no process has fired the newer definition for the lease: the fix says what to do)."""
        now = self.clock.now_ms()
        states = self.store.schedule_states()
        report = []
        for s in self.schedules.values():
            state = states.get(s.id)
            since = max(now - window_ms, state["created_at"]) if state else now
            slots = cron.slots_between(s.cron, s.timezone, since, now, limit=100_000)
            runs = self._window_runs(s, since, now)
            by_key: dict[str, list[WindowRun]] = {}
            for r in runs:
                if not r.manual:
                    by_key.setdefault(r.key, []).append(r)
            failed = [
                x
                for x in slots
                if s.key(x) in by_key and all(r.outcome == "lost" for r in by_key[s.key(x)])
            ]
            # a run no worker has started yet has not run: a backed-up queue is not a healthy one
            queued = [
                x
                for x in slots
                if s.key(x) in by_key and all(r.status in WAITING for r in by_key[s.key(x)])
            ]
            lost = (
                self._lost(s, runs, now - window_ms, states, now)
                if any(r.outcome == "lost" for r in runs)
                else []
            )
            status = (
                "lost"
                if any(g["covered_by"] is None for g in lost)
                else "recovering"
                if lost
                else "ok"
            )
            fixes = [g["fix"] for g in lost if g["fix"]]
            enabled = self.enabled(s, states)
            # a newer configuration fires it otherwise: this one's slots are not its to miss
            # (a worker not yet updated alerted every slot of its old cron as missed)
            superseded = self.versions.standing_in(s, states) is Standing.STALE
            # stalled: the newest definition, enabled there, fired by no process for the lease
            stalled = self.versions.stalled(s, states, self.clock.now_ms())
            if stalled is not None:
                # the newest definition's processes are gone, and this older one fires nothing
                status = "stalled"
                fixes.append(
                    f"the configuration written at {iso((state or {}).get('defined_at'))} defines "
                    f"{s.id} and no process with it has ticked since {iso(stalled)}: start its "
                    "workers again, or, if the configuration here is the right one, write it "
                    "again (touch flowjobs.toml) and restart the workers that have it"
                )
            elif not enabled and status == "ok":
                status = "paused"
            elif superseded and status == "ok":
                status = "superseded"
            report.append(
                {
                    "id": s.id,
                    "enabled": enabled,
                    "slots": len(slots),
                    "ran": sum(1 for x in slots if s.key(x) in by_key) - len(queued),
                    "queued": [iso(x) for x in queued],
                    # a paused schedule misses its slots on purpose: no alert for each of them
                    "missing": [
                        iso(x)
                        for x in slots
                        if enabled and not superseded and s.key(x) not in by_key
                    ],
                    "duplicated": sorted(k for k, v in by_key.items() if len(v) > 1),
                    "failed": [iso(x) for x in failed],
                    "lost": lost,
                    "status": status,
                    "fix": "; ".join(fixes) or None,
                    "fired_as": self.versions.fired_as(s, states),
                }
            )
        return report

    def _lost(
        self, s: Schedule, runs: list[WindowRun], since: int, states: dict, now: int
    ) -> list[dict]:
        """The gaps from `since` on (see `_gaps`), each with the next slot if its window will
        reach back over it, else the command that covers it."""
        gaps = self._gaps([r for r in runs if r.end > since], since)
        if not gaps:
            return []
        last = (states.get(s.id) or {}).get("last_slot")
        upcoming = cron.slots_between(
            s.cron, s.timezone, last if last is not None else now, now + 800 * 86400_000, limit=1
        )
        reach = None
        if upcoming and last is not None and self.enabled(s, states):
            nxt = upcoming[0]
            prior = s.previous(nxt) if s.catchup == "skip" else None
            ordinary = prior if prior is not None else last
            floor = self._floor(s, nxt)
            before = [r for r in self._window_runs(s, min(floor, ordinary), nxt) if r.end < nxt]
            reach = self._reach(s, nxt, ordinary, before, floor)[0]
        lost = []
        for a, b in gaps:
            names = [r.id for r in runs if r.outcome == "lost" and r.start < b and r.end > a]
            covered = reach is not None and reach <= a
            lost.append(
                {
                    "from": iso(a),
                    "to": iso(b),
                    "runs": names,
                    "covered_by": iso(upcoming[0]) if covered else None,
                    "fix": None
                    if covered
                    else f"flowjobs schedules trigger {s.id} --since {iso(a)}",
                }
            )
        return lost


def _stretch_start(runs: list[WindowRun], at: int) -> int:
    """The start of the unbroken stretch of windows (any outcome) that reaches `at`, or `at`."""
    for a, b in reversed(_merge([(r.start, r.end) for r in runs])):
        if a <= at <= b:
            return a
    return at


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(x for x in spans if x[1] > x[0]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _minus(span: tuple[int, int], cut: tuple[int, int]) -> list[tuple[int, int]]:
    (a, b), (c, d) = span, cut
    if d <= a or c >= b:
        return [span]
    return [x for x in ((a, c), (d, b)) if x[1] > x[0]]
