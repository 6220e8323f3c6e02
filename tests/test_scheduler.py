"""Schedules: cron evaluation (property tests, DST), ticking and catch-up with a pinned clock,
backfill, enable/disable, retention — on SQLite and PostgreSQL."""

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowjobs.core import cron
from flowjobs.core.clock import iso, parse_iso
from flowjobs.core.duties import prune_once

SCHED_TASKS = {"modules": ["tests.tasks_for_tests", "tests.scheduled_tasks"]}
HOUR = 3600_000
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata",
         "America/Sao_Paulo", "Pacific/Chatham"]


def ms(text: str) -> int:
    return parse_iso(text)


# -- cron evaluation ------------------------------------------------------------------------
field_minute = st.sampled_from(["0", "30", "*/15", "5,35", "*/7", "10-20/5", "*"])
field_hour = st.sampled_from(["*", "2", "1-3", "*/6", "0,12", "2,3"])
field_dom = st.sampled_from(["*", "1", "15", "31", "1-7"])
field_month = st.sampled_from(["*", "jan,mar,nov", "*/2", "10-12"])
field_dow = st.sampled_from(["*", "mon-fri", "sun", "1,3,5"])
expressions = st.one_of(
    st.builds(lambda *f: " ".join(f), field_minute, field_hour, field_dom, field_month, field_dow),
    st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly"]))


@settings(max_examples=150, deadline=None)
@given(expressions, st.sampled_from(ZONES),
       st.integers(min_value=ms("2024-01-01T00:00:00Z"), max_value=ms("2030-12-31T00:00:00Z")))
def test_slots_strictly_increase_and_tile_time(expression, zone_name, start):
    slots = cron.next_slots(expression, zone_name, start, 40)
    assert slots[0] > start
    assert all(a < b for a, b in zip(slots, slots[1:]))
    # the same slots come out of a range query, and the slot before each is the one before it
    assert cron.slots_between(expression, zone_name, start, slots[-1]) == slots
    for previous, slot in zip(slots, slots[1:6]):
        assert cron.previous_slot(expression, zone_name, slot) == previous


@pytest.mark.parametrize("zone_name, spring, fall", [
    ("America/New_York", "2026-03-08", "2026-11-01"),
    ("Europe/Berlin", "2026-03-29", "2026-10-25"),
])
def test_daily_0230_runs_once_on_both_dst_days(zone_name, spring, fall):
    for day in (spring, fall):
        start = ms(f"{day}T00:00:00Z") - 12 * HOUR
        slots = cron.slots_between("30 2 * * *", zone_name, start, start + 48 * HOUR)
        local_days = [datetime.fromtimestamp(s / 1000, timezone.utc).astimezone(cron.zone(zone_name)).date().isoformat()
                      for s in slots]
        assert local_days.count(day) == 1, (day, [iso(s) for s in slots])


def test_invalid_expressions_and_zones_are_refused():
    for bad in ("61 * * * *", "* * * *", "* * * * * *", "@fortnightly", "not cron"):
        with pytest.raises(ValueError):
            cron.normalise(bad)
    with pytest.raises(ValueError, match="IANA"):
        cron.zone("Mars/Olympus")


# -- ticking ---------------------------------------------------------------------------------
@pytest.fixture
def sched_rt(make_runtime, clock):
    def factory(**schedule):
        schedules = {"hourly": {"task": "test-every-minute", "cron": "0 * * * *", **schedule},
                     "test-hourly": {"enabled": False}}  # declared on a test task; not under test here
        return make_runtime(tasks=SCHED_TASKS, schedules=schedules)
    clock.set(ms("2027-01-15T08:20:00Z"))
    return factory


def _norm(payload: dict) -> dict:
    """Times as iso() writes them (the payload holds pydantic's ISO form)."""
    fix = lambda v: iso(parse_iso(v)) if v else v  # noqa: E731
    return {**payload, "timestamp": fix(payload["timestamp"]), "lastTimestamp": fix(payload["lastTimestamp"]),
            "upcoming": [fix(u) for u in payload["upcoming"]]}


def runs_of(rt, task="test-every-minute"):
    rows = rt.store.list_runs(task=task, limit=1000)
    return sorted((_norm(json.loads(r["payload"])) for r in rows), key=lambda p: p["timestamp"])


def test_first_sight_catches_up_nothing_then_one_run_per_slot(sched_rt, clock):
    rt = sched_rt()
    assert rt.scheduler.tick() == []
    assert runs_of(rt) == []
    clock.set(ms("2027-01-15T09:00:00Z"))
    [result] = rt.scheduler.tick()
    assert result.slots == [ms("2027-01-15T09:00:00Z")]
    assert rt.scheduler.tick() == []  # the same slot again: nothing
    [payload] = runs_of(rt)
    assert payload["timestamp"] == "2027-01-15T09:00:00.000Z"
    assert payload["lastTimestamp"] == "2027-01-15T08:00:00.000Z"
    assert payload["scheduleId"] == "hourly" and payload["timezone"] == "UTC"
    assert payload["upcoming"] == [f"2027-01-15T{h}:00:00.000Z" for h in ("10", "11", "12", "13", "14")]
    [row] = rt.store.list_runs(task="test-every-minute")
    assert row["idempotency_key"] == "hourly:2027-01-15T09:00:00.000Z"


def test_catchup_latest_runs_the_newest_slot_covering_the_gap(sched_rt, clock):
    rt = sched_rt()
    rt.scheduler.tick()
    clock.set(ms("2027-01-15T13:10:00Z"))  # down for 09:00..13:00
    [result] = rt.scheduler.tick()
    assert result.slots == [ms("2027-01-15T13:00:00Z")]
    [payload] = runs_of(rt)
    assert payload["lastTimestamp"] == "2027-01-15T08:00:00.000Z"  # no gap


def test_catchup_all_runs_every_missed_slot_up_to_the_cap(sched_rt, clock):
    rt = sched_rt(catchup="all", max_catchup=3)
    rt.scheduler.tick()
    clock.set(ms("2027-01-15T13:10:00Z"))
    [result] = rt.scheduler.tick()
    assert [iso(s) for s in result.slots] == [f"2027-01-15T{h}:00:00.000Z" for h in ("11", "12", "13")]
    windows = [(p["lastTimestamp"], p["timestamp"]) for p in runs_of(rt)]
    assert windows == [("2027-01-15T08:00:00.000Z", "2027-01-15T11:00:00.000Z"),
                       ("2027-01-15T11:00:00.000Z", "2027-01-15T12:00:00.000Z"),
                       ("2027-01-15T12:00:00.000Z", "2027-01-15T13:00:00.000Z")]


def test_catchup_skip_drops_late_slots_but_runs_on_time_ones(sched_rt, clock):
    rt = sched_rt(catchup="skip")
    rt.scheduler.tick()
    clock.set(ms("2027-01-15T13:10:00Z"))  # 10 minutes late: beyond the 1m grace
    assert rt.scheduler.tick() == []
    clock.set(ms("2027-01-15T14:00:30Z"))
    [result] = rt.scheduler.tick()
    assert [p["lastTimestamp"] for p in runs_of(rt)] == ["2027-01-15T13:00:00.000Z"]


def test_windows_tile_time_across_a_dst_change(make_runtime, clock):
    rt = make_runtime(tasks=SCHED_TASKS, schedules={"ny": {
        "task": "test-every-minute", "cron": "30 * * * *", "timezone": "America/New_York"},
        "test-hourly": {"enabled": False}})
    clock.set(ms("2026-11-01T03:00:00Z"))
    rt.scheduler.tick()
    for _ in range(12 * 6):  # ten-minute steps over twelve hours spanning the fall-back
        clock.advance(600)
        rt.scheduler.tick()
    payloads = runs_of(rt)
    assert len(payloads) >= 11
    for before, after in zip(payloads, payloads[1:]):
        assert after["lastTimestamp"] == before["timestamp"]


def test_backfill_is_idempotent_and_preview_shows_windows(sched_rt, clock):
    rt = sched_rt()
    start, end = ms("2027-01-14T20:00:00Z"), ms("2027-01-15T02:00:00Z")
    dry = rt.scheduler.backfill("hourly", start, end, dry_run=True)
    assert (dry["slots"], dry["new"]) == (6, 6) and runs_of(rt) == []
    first = rt.scheduler.backfill("hourly", start, end)
    assert (first["new"], first["existing"]) == (6, 0)
    again = rt.scheduler.backfill("hourly", start, end)
    assert (again["new"], again["existing"]) == (0, 6)
    windows = rt.scheduler.preview("hourly", start, end)
    assert [(w["lastTimestamp"], w["timestamp"]) for w in windows][:2] == [
        ("2027-01-14T20:00:00.000Z", "2027-01-14T21:00:00.000Z"),
        ("2027-01-14T21:00:00.000Z", "2027-01-14T22:00:00.000Z")]
    assert rt.scheduler.health()[0]["duplicated"] == []


def test_disable_and_enable(sched_rt, clock):
    rt = sched_rt()
    rt.scheduler.tick()
    rt.scheduler.set_enabled("hourly", False)
    clock.set(ms("2027-01-15T09:00:00Z"))
    assert rt.scheduler.tick() == []
    assert rt.scheduler.describe()[0]["enabled"] is False
    rt.scheduler.set_enabled("hourly", True)
    assert [r.schedule for r in rt.scheduler.tick()] == ["hourly"]


def test_manual_trigger_is_not_a_slot(sched_rt):
    rt = sched_rt()
    run = rt.scheduler.trigger_now("hourly")
    row = rt.store.get_run(run.id)
    assert row["idempotency_key"].startswith("hourly:manual:")
    assert rt.scheduler.health()[0]["duplicated"] == []


def test_declared_schedule_overridden_and_disabled_by_config(make_runtime, clock):
    declared = make_runtime(tasks=SCHED_TASKS)
    assert declared.scheduler.get("test-hourly").cron == "0 * * * *"
    overridden = make_runtime(tasks=SCHED_TASKS, schedules={"test-hourly": {"cron": "*/30 * * * *", "enabled": False}})
    s = overridden.scheduler.get("test-hourly")
    assert (s.task, s.cron, s.enabled) == ("test-hourly", "*/30 * * * *", False)


def test_schedule_config_errors(make_runtime):
    from flowjobs.errors import ConfigError

    with pytest.raises(ConfigError, match="schedules.x: needs"):
        make_runtime(tasks=SCHED_TASKS, schedules={"x": {"cron": "@daily"}}).scheduler
    with pytest.raises(ConfigError, match="schedules.y.task: unknown task"):
        make_runtime(tasks=SCHED_TASKS, schedules={"y": {"task": "nope", "cron": "@daily"}}).scheduler


def test_pruner_keeps_recent_runs_and_live_keys(make_runtime, clock):
    from flowjobs.core.worker import Worker, WorkerOptions

    rt = make_runtime()
    old = rt.trigger("noop")
    keyed = rt.trigger("noop", idempotency_key="k", idempotency_key_ttl="60d")
    failed = rt.trigger("test-abort")
    w = Worker(rt, WorkerOptions())
    w.run_once()
    assert w.wait_idle(10)
    clock.advance(8 * 86400)
    recent = rt.trigger("noop")
    w.run_once()
    assert w.wait_idle(10)
    assert prune_once(rt) == 1
    assert rt.store.get_run(old.id) is None and rt.store.attempts(old.id) == []
    for kept in (keyed, failed, recent):
        assert rt.store.get_run(kept.id) is not None
    clock.advance(31 * 86400)
    assert prune_once(rt) == 2  # the failed run, and `recent`; `keyed`'s key still holds
    assert rt.store.get_run(keyed.id) is not None
