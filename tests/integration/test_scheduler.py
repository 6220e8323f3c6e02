"""Schedules: cron evaluation (property tests, DST), ticking and catch-up with a pinned clock,
backfill, enable/disable, retention — on SQLite and PostgreSQL."""

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowjobs import cron
from flowjobs.core import duties
from flowjobs.core.client import TriggerItem
from flowjobs.core.clock import iso, parse_iso
from flowjobs.core.duties import prune_once
from tests.billing_helpers import drain

SCHED_TASKS = {"modules": ["tests.tasks_for_tests", "tests.scheduled_tasks"]}
HOUR = 3600_000
ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Chatham",
]


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
    st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly"]),
)


@settings(max_examples=150, deadline=None)
@given(
    expressions,
    st.sampled_from(ZONES),
    st.integers(min_value=ms("2024-01-01T00:00:00Z"), max_value=ms("2030-12-31T00:00:00Z")),
)
def test_slots_strictly_increase_and_tile_time(expression, zone_name, start):
    slots = cron.next_slots(expression, zone_name, start, 40)
    assert slots[0] > start
    assert all(a < b for a, b in zip(slots, slots[1:]))
    # the same slots come out of a range query, and the slot before each is the one before it
    assert cron.slots_between(expression, zone_name, start, slots[-1]) == slots
    for previous, slot in zip(slots, slots[1:6]):
        assert cron.previous_slot(expression, zone_name, slot) == previous


@pytest.mark.parametrize(
    "zone_name, spring, fall",
    [
        ("America/New_York", "2026-03-08", "2026-11-01"),
        ("Europe/Berlin", "2026-03-29", "2026-10-25"),
    ],
)
def test_daily_0230_runs_once_on_both_dst_days(zone_name, spring, fall):
    for day in (spring, fall):
        start = ms(f"{day}T00:00:00Z") - 12 * HOUR
        slots = cron.slots_between("30 2 * * *", zone_name, start, start + 48 * HOUR)
        local_days = [
            datetime.fromtimestamp(s / 1000, UTC)
            .astimezone(cron.zone(zone_name))
            .date()
            .isoformat()
            for s in slots
        ]
        assert local_days.count(day) == 1, (day, [iso(s) for s in slots])


def test_invalid_expressions_and_zones_are_refused():
    for bad in ("61 * * * *", "* * * *", "* * * * * *", "@fortnightly", "not cron"):
        with pytest.raises(ValueError):
            cron.normalise(bad)
    with pytest.raises(ValueError, match="IANA"):
        cron.zone("Mars/Olympus")
    # croniter takes a random "R" (drawn anew by each process: one hourly schedule fired several
    # times an hour) and days no month has (then every tick failed "unexpected")
    for bad, why in [
        ("R * * * *", "random"),
        ("0 R * * *", "random"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 31 4,6 *", "never fires"),
    ]:
        with pytest.raises(ValueError, match=why):
            cron.normalise(bad)
    for good in ("0 0 29 2 *", "0 0 L * *", "0 0 * * MON#1", "0 0 * * L5", "0 0 15W * *"):
        assert cron.normalise(good) == good


# -- ticking ---------------------------------------------------------------------------------
@pytest.fixture
def sched_rt(make_runtime, clock):
    def factory(**schedule):
        schedules = {
            "hourly": {"task": "test-every-minute", "cron": "0 * * * *", **schedule},
            "test-hourly": {"enabled": False},
        }  # declared on a test task; not under test here
        return make_runtime(tasks=SCHED_TASKS, schedules=schedules)

    clock.set(ms("2027-01-15T08:20:00Z"))
    return factory


def _norm(payload: dict) -> dict:
    """Times as iso() writes them (the payload holds pydantic's ISO form)."""
    fix = lambda v: iso(parse_iso(v)) if v else v  # noqa: E731
    return {
        **payload,
        "timestamp": fix(payload["timestamp"]),
        "lastTimestamp": fix(payload["lastTimestamp"]),
        "upcoming": [fix(u) for u in payload["upcoming"]],
    }


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
    assert payload["upcoming"] == [
        f"2027-01-15T{h}:00:00.000Z" for h in ("10", "11", "12", "13", "14")
    ]
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
    assert [iso(s) for s in result.slots] == [
        f"2027-01-15T{h}:00:00.000Z" for h in ("11", "12", "13")
    ]
    windows = [(p["lastTimestamp"], p["timestamp"]) for p in runs_of(rt)]
    assert windows == [
        ("2027-01-15T08:00:00.000Z", "2027-01-15T11:00:00.000Z"),
        ("2027-01-15T11:00:00.000Z", "2027-01-15T12:00:00.000Z"),
        ("2027-01-15T12:00:00.000Z", "2027-01-15T13:00:00.000Z"),
    ]


@pytest.mark.parametrize("catchup, newest", [("all", 3), ("latest", 1)])
def test_catchup_after_a_long_outage_counts_back_from_now(sched_rt, clock, catchup, newest):
    """90 days of hourly slots (past `DUE_WALK`): the newest are found backwards from now, not
    by walking over every missed slot inside the tick's transaction."""
    rt = sched_rt(catchup=catchup, **({"max_catchup": 3} if catchup == "all" else {}))
    rt.scheduler.tick()  # first sight, 2027-01-15T08:20
    clock.set(ms("2027-04-15T08:20:00Z"))
    [result] = rt.scheduler.tick()
    expected = ["2027-04-15T06:00:00.000Z", "2027-04-15T07:00:00.000Z", "2027-04-15T08:00:00.000Z"]
    assert [iso(x) for x in result.slots] == expected[-newest:]
    assert rt.scheduler.tick() == []  # and the state moved to the newest


def test_catchup_skip_drops_late_slots_but_runs_on_time_ones(sched_rt, clock):
    rt = sched_rt(catchup="skip")
    rt.scheduler.tick()
    clock.set(ms("2027-01-15T13:10:00Z"))  # 10 minutes late: beyond the 1m grace
    assert rt.scheduler.tick() == []
    clock.set(ms("2027-01-15T14:00:30Z"))
    [result] = rt.scheduler.tick()
    assert [p["lastTimestamp"] for p in runs_of(rt)] == ["2027-01-15T13:00:00.000Z"]


def test_skip_on_a_leap_day_schedule_starts_the_window_at_the_last_slot(make_runtime, clock):
    """The skip policy's window starts at the last enqueued slot (four years back)."""
    clock.set(ms("2028-03-01T00:00:00Z"))
    schedules = {
        "leap": {"task": "test-every-minute", "cron": "0 0 29 2 *", "catchup": "skip"},
        "test-hourly": {"enabled": False},
    }
    rt = make_runtime(tasks=SCHED_TASKS, schedules=schedules)
    assert rt.scheduler.tick() == []  # first sight: 2028-02-29 is the last slot
    clock.set(ms("2032-02-29T00:00:30Z"))
    [result] = rt.scheduler.tick()
    assert result.slots == [ms("2032-02-29T00:00:00Z")]
    [payload] = runs_of(rt)
    assert (payload["lastTimestamp"], payload["timestamp"]) == (
        "2028-02-29T00:00:00.000Z",
        "2032-02-29T00:00:00.000Z",
    )


@pytest.mark.parametrize(
    ("first_seen", "fires"),
    [
        ("2026-06-01T00:00:00Z", "2028-02-29T00:00:00Z"),  # 2024-02-29: 823 days back
        ("2104-01-01T00:00:00Z", "2104-02-29T00:00:00Z"),  # 2096-02-29: 2,862 days (no 2100)
    ],
)
@pytest.mark.parametrize("state", ["new", "left-null"])
def test_a_leap_day_schedule_first_seen_long_after_a_leap_day_fires_on_the_next(
    make_runtime, clock, first_seen, fires, state
):
    """A 29 February schedule first seen more than the look-back after the last leap day once
    recorded no slot (NULL), and every later tick found nothing due: it never fired (and
    `schedules health` said ok). Now the look-back reaches 3,000 days, and a state an older
    flowjobs left NULL is filled in at the next tick."""
    assert cron.previous_slot("0 0 29 2 *", "UTC", ms(first_seen)) is not None  # in reach
    clock.set(ms(first_seen))
    schedules = {
        "leap": {"task": "test-every-minute", "cron": "0 0 29 2 *"},
        "test-hourly": {"enabled": False},
    }
    rt = make_runtime(tasks=SCHED_TASKS, schedules=schedules)
    if state == "left-null":  # as the old look-back left it
        with rt.db.transaction() as conn:
            conn.execute(
                rt.store.sql["schedule_insert"],
                {"id": "leap", "last_slot": None, "now": ms(first_seen)},
            )
        assert rt.store.schedule_states()["leap"]["last_slot"] is None
    assert rt.scheduler.tick() == []  # first sight
    clock.set(ms(fires) - 60_000)
    assert rt.scheduler.tick() == []
    clock.set(ms(fires) + 30_000)
    [result] = rt.scheduler.tick()
    assert result.slots == [ms(fires)]
    assert len(runs_of(rt)) == 1


def new_york(make_runtime, cron_expr: str):
    """A runtime whose one enabled schedule, `ny`, runs `cron_expr` in New York's time."""
    return make_runtime(
        tasks=SCHED_TASKS,
        schedules={
            "ny": {"task": "test-every-minute", "cron": cron_expr, "timezone": "America/New_York"},
            "test-hourly": {"enabled": False},
        },
    )


def test_windows_tile_time_across_a_dst_change(make_runtime, clock):
    rt = new_york(make_runtime, "30 * * * *")
    clock.set(ms("2026-11-01T03:00:00Z"))
    rt.scheduler.tick()
    for _ in range(12 * 6):  # ten-minute steps over twelve hours spanning the fall-back
        clock.advance(600)
        rt.scheduler.tick()
    payloads = runs_of(rt)
    assert len(payloads) >= 11
    for before, after in zip(payloads, payloads[1:]):
        assert after["lastTimestamp"] == before["timestamp"]


def test_a_backfills_upcoming_slots_are_the_crons_own_across_a_dst_change(make_runtime, clock):
    """A backfill takes each run's `upcoming` from the slots it enqueues (looking them up one
    run at a time cost a backfill of 10,000 per-minute slots a minute): the same slots as the
    cron gives, across New York's fall-back, and for the last runs, past the range."""
    from flowjobs.core.scheduler import UPCOMING

    rt = new_york(make_runtime, "*/20 * * * *")
    clock.set(ms("2026-11-02T00:00:00Z"))
    report = rt.scheduler.backfill("ny", ms("2026-11-01T04:00:00Z"), ms("2026-11-01T08:00:00Z"))
    payloads = runs_of(rt)
    assert report["new"] == len(payloads) == 9  # 04:20 … 08:00 UTC; the repeated hour once
    for payload in payloads:
        expected = cron.next_slots(
            "*/20 * * * *", "America/New_York", ms(payload["timestamp"]), UPCOMING
        )
        assert payload["upcoming"] == [iso(x) for x in expected], payload["timestamp"]


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
        ("2027-01-14T21:00:00.000Z", "2027-01-14T22:00:00.000Z"),
    ]
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


def hourly(rows: list[dict]) -> dict:
    return next(r for r in rows if r["id"] == "hourly")


def slots_run(rt) -> list[str]:
    return [p["timestamp"][11:16] for p in runs_of(rt)]


OLD_FILE, EDITED_FILE = ms("2027-01-14T12:00:00Z"), ms("2027-01-15T08:22:00Z")


def written(rt, at: int):
    """`rt` as a process whose configuration file was written at `at` (its mtime): what
    `resolve` reads into each schedule's `written_at`."""
    for s in rt.scheduler.schedules.values():
        s.written_at = at
    return rt


def test_a_worker_started_before_an_edit_stops_firing_the_old_cron(sched_rt, clock, caplog):
    """Editing the cron and restarting some workers: the old ones used to fire the old cron
    beside the new one until every worker was restarted."""
    old = written(sched_rt(), OLD_FILE)
    old.scheduler.tick()  # first sight, as a worker started at 08:20
    clock.set(ms("2027-01-15T08:25:00Z"))
    new = written(sched_rt(cron="30 * * * *"), EDITED_FILE)  # edited; one worker restarted
    new.scheduler.tick()
    # a process started later with the old file (a `tick` crontab on a machine not yet
    # updated, a worker restarted there) does not take it back
    late = written(sched_rt(), OLD_FILE)
    for at in ("08:30", "09:00", "09:30", "10:00", "10:30"):
        clock.set(ms(f"2027-01-15T{at}:00Z"))
        new.scheduler.tick()
        with caplog.at_level("WARNING", logger="flowjobs.scheduler"):
            late.scheduler.tick()
            old.scheduler.tick()
    assert slots_run(old) == ["08:30", "09:30", "10:30"]  # not 09:00 and 10:00 as well
    stale = [r.message for r in caplog.records if "not fired by this process" in r.message]
    assert len(stale) == 2  # once for each of the two, not every tick
    assert "Bring this machine's configuration up to date and restart" in stale[0]
    # what the CLI of the unedited configuration says: the schedulers fire a newer definition
    fired = hourly(old.scheduler.describe())["fired_as"]
    assert fired == {
        "since": "2027-01-15T08:22:00.000Z",
        "changed": {"cron": ["30 * * * *", "0 * * * *"]},
        "superseded": True,
    }
    health = hourly(old.scheduler.health())
    assert health["fired_as"] == fired
    # its own cron's slots (09:00, 10:00) are not missed: a newer one fires the schedule
    assert (health["missing"], health["status"]) == ([], "superseded")
    assert hourly(new.scheduler.describe())["fired_as"] is None
    assert hourly(new.scheduler.health())["status"] == "ok"


def test_a_newest_definition_nobody_fires_any_more_is_reported_stalled_not_given_up(
    sched_rt, clock
):
    """A process that ran once with a newer file (a `tick` from a laptop): the workers with the
    older file do not take the schedule back — both crons would fire in turn whenever the newer
    one's ticks came seldom — but `health` says it is stalled, with the fix, and it is alerted."""
    from flowjobs.ops.alerts import find

    old = written(sched_rt(), OLD_FILE)
    old.scheduler.tick()
    clock.set(ms("2027-01-15T08:25:00Z"))
    written(sched_rt(cron="30 * * * *"), EDITED_FILE).scheduler.tick()  # ran once, then gone
    clock.set(ms("2027-01-15T08:34:00Z"))
    assert hourly(old.scheduler.health())["status"] == "superseded"  # seen 9 minutes ago
    for at in ("09:00", "10:00", "11:00"):
        clock.set(ms(f"2027-01-15T{at}:00Z"))
        old.scheduler.tick()
    assert slots_run(old) == []  # never its old cron again
    health = hourly(old.scheduler.health())
    assert health["status"] == "stalled" and health["missing"] == []
    assert "no process with it has ticked since 2027-01-15T08:25:00.000Z" in health["fix"]
    [alert] = [a for a in find(old) if a["kind"] == "schedule_stalled"]
    assert alert["subject"] == "Schedule hourly is fired by no process"
    # the fix it names: the right file written again (newest), its workers restarted
    again = written(sched_rt(), ms("2027-01-15T11:01:00Z"))
    clock.set(ms("2027-01-15T12:00:00Z"))
    [result] = again.scheduler.tick()
    assert result.slots == [ms("2027-01-15T12:00:00Z")]
    assert hourly(again.scheduler.health())["status"] == "ok"


def test_stalled_follows_the_newest_definitions_enabled_not_this_ones(sched_rt, clock):
    """A newest file that disables the schedule, its process gone: the older workers (which
    have it enabled) reported it stalled and alerted for a schedule meant to be off."""
    old = written(sched_rt(), OLD_FILE)
    old.scheduler.tick()
    clock.set(ms("2027-01-15T08:25:00Z"))
    written(sched_rt(enabled=False), EDITED_FILE).scheduler.tick()  # then gone
    clock.set(ms("2027-01-15T11:00:00Z"))
    old.scheduler.tick()
    assert hourly(old.scheduler.health())["status"] == "superseded"  # off, as meant


def test_an_older_definition_never_fires_however_seldom_the_newer_one_ticks(make_runtime, clock):
    """A lease held by the newer process's ticks: with `[scheduler] interval` longer than it, the
    older one took over between them, and both crons fired in turn."""
    clock.set(ms("2027-01-15T08:20:00Z"))
    schedules = {"hourly": {"task": "test-every-minute", "cron": "0 * * * *"}}
    sections = {"tasks": SCHED_TASKS, "scheduler": {"interval": "15m", "grace": "30m"}}
    old = written(make_runtime(schedules=schedules, **sections), OLD_FILE)
    old.scheduler.tick()
    edited = {"hourly": {"task": "test-every-minute", "cron": "30 * * * *"}}
    new = written(make_runtime(schedules=edited, **sections), EDITED_FILE)
    for minute in range(8 * 60 + 25, 11 * 60, 15):  # the new one ticks every 15 minutes
        clock.set(ms(f"2027-01-15T{minute // 60:02d}:{minute % 60:02d}:00Z"))
        new.scheduler.tick()
        for late in (5, 10):  # the old one more often
            clock.advance(late * 60)
            old.scheduler.tick()
    assert {t[3:] for t in slots_run(old)} == {"30"}


def test_an_edit_counts_the_new_crons_slots_from_when_it_took_over(sched_rt, clock):
    old = written(sched_rt(), OLD_FILE)
    old.scheduler.tick()
    for hour in ("09", "10", "11", "12"):
        clock.set(ms(f"2027-01-15T{hour}:00:00Z"))
        old.scheduler.tick()
    clock.set(ms("2027-01-15T12:01:00Z"))
    new = written(sched_rt(cron="*/5 * * * *"), EDITED_FILE)
    new.scheduler.tick()
    for minute in (5, 10, 15, 20):
        clock.set(ms(f"2027-01-15T12:{minute:02d}:00Z"))
        new.scheduler.tick()
    health = hourly(new.scheduler.health())
    # its */5 slots before 12:01 were never its to fire (44 of them were reported missing)
    assert health["missing"] == [] and health["status"] == "ok", health


def test_a_schedule_disabled_in_the_edited_configuration_stops_the_older_workers(sched_rt, clock):
    old = written(sched_rt(), OLD_FILE)
    old.scheduler.tick()
    clock.set(ms("2027-01-15T08:25:00Z"))
    new = written(sched_rt(enabled=False), EDITED_FILE)
    new.scheduler.tick()
    for at in ("09:00", "10:00", "11:00"):  # the disabled definition is kept alive
        clock.set(ms(f"2027-01-15T{at}:00Z"))
        new.scheduler.tick()
        old.scheduler.tick()
    assert slots_run(old) == []
    assert hourly(old.scheduler.health())["missing"] == []  # not alerted as missed either
    # enabled again by a later edit: the older workers, defining it alike, fire it again, and
    # the catch-up policy decides what the paused hours get (as after `schedules enable`)
    clock.set(ms("2027-01-15T11:05:00Z"))
    again = written(sched_rt(), ms("2027-01-15T11:04:00Z"))
    again.scheduler.tick()
    clock.set(ms("2027-01-15T12:00:00Z"))
    old.scheduler.tick()
    again.scheduler.tick()
    windows = [(p["lastTimestamp"][11:16], p["timestamp"][11:16]) for p in runs_of(again)]
    assert windows == [("08:00", "11:00"), ("11:00", "12:00")]


def test_two_definitions_written_at_the_same_moment_agree_on_one(sched_rt, clock):
    one, other = sched_rt(), sched_rt(cron="30 * * * *")  # no file: both versions 0
    for minute in range(8 * 60 + 21, 12 * 60, 5):  # both tick, as workers do
        clock.set(ms(f"2027-01-15T{minute // 60:02d}:{minute % 60:02d}:00Z"))
        one.scheduler.tick()
        other.scheduler.tick()
    assert slots_run(one) in (  # one cron's slots, each once
        ["09:00", "10:00", "11:00"],
        ["08:30", "09:30", "10:30", "11:30"],
    )


def test_a_schedule_is_versioned_by_when_its_configuration_file_was_written(make_runtime, tmp_path):
    import os

    from flowjobs.config import load_settings
    from flowjobs.core.scheduler import resolve

    config = tmp_path / "flowjobs.toml"
    config.write_text('[schedules.hourly]\ntask = "daily-cron"\ncron = "0 * * * *"\n')
    os.utime(config, (1_800_000_000, 1_800_000_000))
    rt = make_runtime()
    settings = load_settings(str(config))
    assert settings.config_file == config.resolve()
    assert resolve(rt.registry, settings)["hourly"].written_at == 1_800_000_000_000
    declared = resolve(rt.registry, rt.settings)["hourly-cron"]  # on a built-in task
    import flowjobs.tasks.hourly_cron as module

    assert declared.written_at == int(os.stat(module.__file__).st_mtime * 1000)
    # with a configuration file, a declared schedule is as new as the file if that is newer:
    # taking an override out of the file makes the declared definition the newest again
    os.utime(config, (4_000_000_000, 4_000_000_000))
    confirmed = resolve(rt.registry, load_settings(str(config)))["hourly-cron"]
    assert confirmed.written_at == 4_000_000_000_000
    # a source whose time cannot be told (0: a module in a zip, no file) counts from when the
    # process read it, not from 1970 (where any edit lost to the older definition by its text)
    unknown = resolve(rt.registry, rt.settings)["hourly-cron"]
    unknown.written_at = 0
    versions = rt.scheduler.versions
    assert versions.version(unknown) == versions.started_at > 0


def test_a_paused_schedule_is_not_reported_or_alerted_as_missing_its_slots(make_runtime, clock):
    from flowjobs.ops import alerts

    rt = make_runtime(
        tasks=SCHED_TASKS,
        schedules={
            "hourly": {"task": "test-every-minute", "cron": "0 * * * *"},
            "test-hourly": {"enabled": False},
        },
        alerts={"email": ["ops@example.com"]},
    )
    clock.set(ms("2027-01-15T08:20:00Z"))
    rt.scheduler.tick()
    rt.scheduler.set_enabled("hourly", False)
    clock.set(ms("2027-01-15T13:30:00Z"))
    health = {h["id"]: h for h in rt.scheduler.health()}["hourly"]
    assert (health["enabled"], health["missing"], health["status"]) == (False, [], "paused")
    assert [a for a in alerts.find(rt) if a["kind"] == "slot_missed"] == []
    rt.scheduler.set_enabled("hourly", True)  # enabled, a missed slot is reported again
    clock.set(ms("2027-01-15T15:30:00Z"))
    health = {h["id"]: h for h in rt.scheduler.health()}["hourly"]
    assert health["enabled"] is True and "2027-01-15T14:00:00.000Z" in health["missing"]


def test_a_backfill_longer_than_its_limit_is_refused_not_cut_short(sched_rt, clock, monkeypatch):
    from flowjobs.core import scheduler
    from flowjobs.errors import BadInput

    monkeypatch.setattr(scheduler, "BACKFILL_MAX", 5)  # 100,000 in use
    rt = sched_rt()
    start, end = ms("2027-01-14T20:00:00Z"), ms("2027-01-15T02:00:00Z")
    with pytest.raises(BadInput, match="more than 5 slots of hourly.*split the range"):
        rt.scheduler.backfill("hourly", start, end)
    assert runs_of(rt) == []
    assert rt.scheduler.backfill("hourly", start, end - 3600_000)["new"] == 5


def test_manual_trigger_is_not_a_slot(sched_rt):
    rt = sched_rt()
    run = rt.scheduler.trigger_now("hourly")
    row = rt.store.get_run(run.id)
    assert row["idempotency_key"].startswith("hourly:manual:")
    assert rt.scheduler.health()[0]["duplicated"] == []


def test_declared_schedule_overridden_and_disabled_by_config(make_runtime, clock):
    declared = make_runtime(tasks=SCHED_TASKS)
    assert declared.scheduler.get("test-hourly").cron == "0 * * * *"
    overridden = make_runtime(
        tasks=SCHED_TASKS, schedules={"test-hourly": {"cron": "*/30 * * * *", "enabled": False}}
    )
    s = overridden.scheduler.get("test-hourly")
    assert (s.task, s.cron, s.enabled) == ("test-hourly", "*/30 * * * *", False)


def test_schedule_config_errors(make_runtime):
    from flowjobs.errors import ConfigError

    with pytest.raises(ConfigError, match="schedules.x: needs"):
        make_runtime(tasks=SCHED_TASKS, schedules={"x": {"cron": "@daily"}}).scheduler
    with pytest.raises(ConfigError, match="schedules.y.task: unknown task"):
        make_runtime(
            tasks=SCHED_TASKS, schedules={"y": {"task": "nope", "cron": "@daily"}}
        ).scheduler


def test_max_catchup_without_catchup_all_is_warned_about_not_refused(make_runtime, caplog):
    rt = make_runtime(
        tasks=SCHED_TASKS,
        schedules={"z": {"task": "test-every-minute", "cron": "@daily", "max_catchup": 5}},
    )
    with caplog.at_level("WARNING", logger="flowjobs.scheduler"):
        assert rt.scheduler.get("z").max_catchup == 5
    assert 'schedules.z.max_catchup is used only with catchup = "all"' in caplog.text


def test_pruner_keeps_recent_runs_and_live_keys(make_runtime, clock):

    rt = make_runtime()
    old = rt.trigger("noop")
    keyed = rt.trigger("noop", idempotency_key="k", idempotency_key_ttl="60d")
    failed = rt.trigger("test-abort")
    w = rt.make_worker(rt.worker_options())
    w.run_once()
    assert w.wait_idle(10)
    clock.advance(8 * 86400)
    recent = rt.trigger("noop")
    w.run_once()
    assert w.wait_idle(10)
    assert prune_once(rt.store, rt.clock, rt.settings.retention) == 1
    assert rt.store.get_run(old.id) is None and rt.store.attempts(old.id) == []
    for kept in (keyed, failed, recent):
        assert rt.store.get_run(kept.id) is not None
    clock.advance(31 * 86400)
    assert (
        prune_once(rt.store, rt.clock, rt.settings.retention) == 2
    )  # the failed run, and `recent`; `keyed`'s key still holds
    assert rt.store.get_run(keyed.id) is not None


def test_pruner_deletes_every_prunable_run_in_batches_resting_between_them(
    make_runtime, clock, monkeypatch
):
    monkeypatch.setattr(duties, "PRUNE_BATCH", (10, 20))  # 130 runs: at least 7 batches
    rt = make_runtime()
    rt.client.batch_trigger([TriggerItem("noop") for _ in range(130)])
    keyed = rt.trigger("noop", idempotency_key="k", idempotency_key_ttl="60d")
    drain(rt)
    clock.advance(8 * 86400)
    recent = rt.trigger("noop")
    drain(rt)
    rests: list[float] = []
    assert prune_once(rt.store, rt.clock, rt.settings.retention, pause=rests.append) == 130
    assert len(rests) >= 6 and all(r >= 0 for r in rests)  # a rest after every full batch
    assert rt.store.count_by_status() == {"completed": 2}
    assert rt.store.get_run(keyed.id) is not None and rt.store.get_run(recent.id) is not None
    assert prune_once(rt.store, rt.clock, rt.settings.retention, pause=rests.append) == 0


# -- windows tile what succeeded (issue 12, item 2) -------------------------------------------
WINDOW_TASKS = {
    "modules": [
        "tests.tasks_for_tests",
        "tests.scheduled_tasks",
        "tests.acceptance.faults.cron_tasks",
    ]
}
ALERTS = {
    "alerts": {"email": ["ops@example.com"]}
}  # delivered as .eml files under the test's tmp dir


@pytest.fixture
def window_rt(make_runtime, clock):
    from tests.acceptance.faults import cron_tasks

    for kept in (cron_tasks.FAIL, cron_tasks.FAIL_CHILD, cron_tasks.WINDOWS):
        kept.clear()

    def factory(cron_expr="0 * * * *", start="2027-01-15T08:20:00Z", sections=None, **schedule):
        clock.set(ms(start))
        rt = make_runtime(
            tasks=WINDOW_TASKS,
            **(sections or {}),
            schedules={
                "w": {"task": "test-cron-window", "cron": cron_expr, **schedule},
                "test-hourly": {"enabled": False},
            },
        )
        rt.scheduler.tick()  # first sight
        return rt

    yield factory
    for kept in (cron_tasks.FAIL, cron_tasks.FAIL_CHILD, cron_tasks.WINDOWS):
        kept.clear()


def hour(h: int, day: int = 15) -> str:
    return f"2027-01-{day:02d}T{h:02d}:00:00.000Z"


def fire(rt, clock, at: str, *, run: bool = True):
    """Tick at `at` (and run what is due, to the end, unless `run` is false); the new windows."""
    from tests.billing_helpers import drain

    clock.set(ms(at))
    ticked = rt.scheduler.tick()
    if run:
        drain(rt)
    return [
        (_norm(p)["lastTimestamp"], _norm(p)["timestamp"])
        for p in (json.loads(rt.store.get_run(i)["payload"]) for r in ticked for i in r.run_ids)
    ]


def health_of(rt, schedule="w", **options) -> dict:
    return {h["id"]: h for h in rt.scheduler.health(**options)}[schedule]


def slot_run(rt, slot: str, task="test-cron-window"):
    [row] = [
        r for r in rt.store.list_runs(task=task, limit=1000) if r["idempotency_key"] == f"w:{slot}"
    ]
    return row


@pytest.mark.parametrize("fault", ["failed", "canceled", "child failed"])
def test_the_window_of_a_slot_that_did_not_succeed_is_covered_by_the_next(window_rt, clock, fault):
    from tests.acceptance.faults import cron_tasks

    rt = window_rt(sections=ALERTS)
    assert fire(rt, clock, hour(9)) == [(hour(8), hour(9))]
    if fault == "failed":
        cron_tasks.FAIL.add(hour(10))
    elif fault == "child failed":
        cron_tasks.FAIL_CHILD.add(hour(10))
    assert fire(rt, clock, hour(10), run=fault != "canceled") == [(hour(9), hour(10))]
    if fault == "canceled":
        assert rt.store.cancel(slot_run(rt, hour(10))["id"], clock.now_ms()) == "canceled"
    assert slot_run(rt, hour(10))["status"] == {"failed": "failed", "canceled": "canceled"}.get(
        fault, "completed"
    )

    assert fire(rt, clock, hour(11)) == [(hour(9), hour(11))]  # reaches back over the lost hour
    assert fire(rt, clock, hour(12)) == [(hour(11), hour(12))]  # and tiles again after it
    assert cron_tasks.WINDOWS[-2:] == [(hour(9), hour(11)), (hour(11), hour(12))]

    health = health_of(rt)
    assert (health["failed"], health["lost"], health["status"], health["duplicated"]) == (
        [hour(10)],
        [],
        "ok",
        [],
    )
    [alert] = [
        json.loads(r["payload"])
        for r in rt.store.list_runs(task="send-alert")
        if r["idempotency_key"].startswith("alert:window-lost:w:")
    ]
    assert alert["details"]["coveredBy"] == hour(11) and alert["details"]["from"] == hour(9)
    assert f"slot {hour(10)}" in alert["subject"] and "reaches back" in alert["text"]


def test_health_names_a_lost_window_before_the_next_slot_covers_it(window_rt, clock):
    from tests.acceptance.faults import cron_tasks

    rt = window_rt()
    fire(rt, clock, hour(9))
    cron_tasks.FAIL.add(hour(10))
    fire(rt, clock, hour(10))
    clock.set(ms("2027-01-15T10:30:00Z"))
    health = health_of(rt)
    assert health["status"] == "recovering" and health["failed"] == [hour(10)]
    assert health["lost"] == [
        {
            "from": hour(9),
            "to": hour(10),
            "runs": [slot_run(rt, hour(10))["id"]],
            "covered_by": hour(11),
            "fix": None,
        }
    ]


def test_health_counts_a_slot_whose_run_waits_for_a_worker_as_queued_not_ran(window_rt, clock):
    """A run no worker has picked up yet was counted in `ran` (a backed-up queue looked
    healthy): it is `queued` until a worker starts it."""
    rt = window_rt()
    fire(rt, clock, hour(9))
    fire(rt, clock, hour(10), run=False)  # enqueued; no worker has taken it
    clock.set(ms("2027-01-15T10:30:00Z"))
    health = health_of(rt)
    assert (health["slots"], health["ran"]) == (2, 1)  # it said 2
    assert health["queued"] == [hour(10)]
    assert (health["missing"], health["status"]) == ([], "ok")  # waiting is neither
    # started (executing, not finished): it ran
    [claimed] = rt.store.claim("w1", 1, ["*"], {}, now=clock.now_ms(), lease_ms=30_000)
    assert claimed.id == slot_run(rt, hour(10))["id"]
    health = health_of(rt)
    assert (health["ran"], health["queued"]) == (2, [])


def test_failures_in_a_row_reach_back_to_the_last_success(window_rt, clock):
    from tests.acceptance.faults import cron_tasks

    rt = window_rt()
    fire(rt, clock, hour(9))
    cron_tasks.FAIL.update({hour(10), hour(11)})
    assert fire(rt, clock, hour(10)) == [(hour(9), hour(10))]
    assert fire(rt, clock, hour(11)) == [(hour(9), hour(11))]
    assert fire(rt, clock, hour(12)) == [(hour(9), hour(12))]
    assert fire(rt, clock, hour(13)) == [(hour(12), hour(13))]


def test_the_very_first_slot_failing_is_reached_back_to_where_the_schedule_started(
    window_rt, clock
):
    from tests.acceptance.faults import cron_tasks

    rt = window_rt()  # first seen at 08:20: it starts after 08:00
    cron_tasks.FAIL.add(hour(9))
    assert fire(rt, clock, hour(9)) == [(hour(8), hour(9))]
    assert fire(rt, clock, hour(10)) == [(hour(8), hour(10))]


def test_a_slot_unfinished_when_the_next_fires_is_counted_on_then_reached_over_if_it_fails(
    window_rt, clock
):
    from tests.acceptance.faults import cron_tasks

    rt = window_rt()
    fire(rt, clock, hour(9))
    fire(rt, clock, hour(10), run=False)  # no worker got to it yet
    assert fire(rt, clock, hour(11), run=False) == [
        (hour(10), hour(11))
    ]  # tiles: 10 may still succeed
    cron_tasks.FAIL.add(hour(10))
    fire(rt, clock, "2027-01-15T11:10:00Z")  # now 10 fails and 11 succeeds
    assert fire(rt, clock, hour(12)) == [(hour(9), hour(12))]  # 09..10 was lost: reached back over


@pytest.mark.parametrize("catchup", ["latest", "all"])
def test_downtime_after_a_failure_reaches_back_past_it(window_rt, clock, catchup):
    from tests.acceptance.faults import cron_tasks

    rt = window_rt(catchup=catchup, **({"max_catchup": 2} if catchup == "all" else {}))
    fire(rt, clock, hour(9))
    cron_tasks.FAIL.add(hour(10))
    fire(rt, clock, hour(10))
    windows = fire(rt, clock, "2027-01-15T14:10:00Z")  # down from 10:00 to 14:10
    assert windows == (
        [(hour(9), hour(14))]
        if catchup == "latest"
        else [(hour(9), hour(13)), (hour(13), hour(14))]
    )


def test_skip_reaches_back_over_a_failure_but_not_across_skipped_time(window_rt, clock):
    from tests.acceptance.faults import cron_tasks

    rt = window_rt(catchup="skip")
    fire(rt, clock, hour(9))
    cron_tasks.FAIL.add(hour(10))
    fire(rt, clock, hour(10))
    assert fire(rt, clock, hour(11)) == [(hour(9), hour(11))]

    cron_tasks.FAIL.add(hour(12))
    fire(rt, clock, hour(12))
    assert fire(rt, clock, "2027-01-15T15:00:20Z") == [
        (hour(14), hour(15))
    ]  # 13 and 14 were skipped
    assert fire(rt, clock, hour(16)) == [
        (hour(15), hour(16))
    ]  # and the lost 11..12 stays behind them
    health = health_of(rt)
    assert health["status"] == "lost"
    assert [(g["from"], g["to"], g["covered_by"]) for g in health["lost"]] == [
        (hour(11), hour(12), None)
    ]
    assert health["fix"] == f"flowjobs schedules trigger w --since {hour(11)}"


def test_the_look_back_is_bounded_and_what_it_cannot_reach_is_reported_with_its_fix(
    window_rt, clock
):
    from tests.acceptance.faults import cron_tasks

    rt = window_rt("0 0 * * *", start="2027-01-01T12:00:00Z", sections=ALERTS)
    day = lambda d: f"2027-01-{d:02d}T00:00:00.000Z"  # noqa: E731
    fire(rt, clock, day(2))
    cron_tasks.FAIL.update(day(d) for d in range(3, 12))
    for d in range(3, 12):
        fire(rt, clock, day(d))
    assert fire(rt, clock, day(12)) == [(day(5), day(12))]  # seven days back, not to the 2nd
    health = health_of(rt, window_ms=30 * 86400_000)
    assert health["status"] == "lost"
    assert [(g["from"], g["to"], g["covered_by"]) for g in health["lost"]] == [
        (day(2), day(5), None)
    ]
    assert health["fix"] == f"flowjobs schedules trigger w --since {day(2)}"
    alerts = [json.loads(r["payload"]) for r in rt.store.list_runs(task="send-alert", limit=100)]
    assert any("beyond the look-back" in a["text"] and day(2) in a["text"] for a in alerts)

    # the fix: a manual run whose window reaches back over the gap
    run = rt.scheduler.trigger_now("w", since=ms(day(2)))
    from tests.billing_helpers import drain

    drain(rt)
    assert rt.store.get_run(run.id)["status"] == "completed"
    assert health_of(rt, window_ms=30 * 86400_000)["status"] == "ok"


def test_a_slower_schedule_reaches_back_at_least_two_slots(window_rt, clock):
    from tests.acceptance.faults import cron_tasks

    rt = window_rt("0 0 1 * *", start="2027-01-15T00:00:00Z")
    fire(rt, clock, "2027-02-01T00:00:00Z")
    cron_tasks.FAIL.add("2027-03-01T00:00:00.000Z")
    fire(rt, clock, "2027-03-01T00:00:00Z")
    assert fire(rt, clock, "2027-04-01T00:00:00Z") == [
        ("2027-02-01T00:00:00.000Z", "2027-04-01T00:00:00.000Z")
    ]


def test_manual_trigger_starts_where_the_next_slot_would(window_rt, clock):
    from tests.acceptance.faults import cron_tasks

    rt = window_rt()
    fire(rt, clock, hour(9))
    cron_tasks.FAIL.add(hour(10))
    fire(rt, clock, hour(10))
    clock.set(ms("2027-01-15T10:20:00Z"))
    run = rt.scheduler.trigger_now("w")
    payload = _norm(json.loads(rt.store.get_run(run.id)["payload"]))
    assert (payload["lastTimestamp"], payload["timestamp"]) == (hour(9), "2027-01-15T10:20:00.000Z")


def test_a_backfilled_slot_is_not_enqueued_again_by_the_tick(window_rt, clock):
    rt = window_rt()
    report = rt.scheduler.backfill("w", ms(hour(10)), ms(hour(12)))
    assert report["new"] == 2
    clock.set(ms("2027-01-15T12:10:00Z"))
    assert (
        rt.scheduler.tick() == []
    )  # 12:00 has its (backfilled) run; before: an IdempotencyConflict, forever
    assert rt.scheduler.failures == {}
    assert fire(rt, clock, hour(13), run=False) == [(hour(12), hour(13))]


# -- a schedule that can never run (issue 12, item 6) ---------------------------------------------
def test_a_schedule_whose_task_rejects_the_payload_is_refused(make_runtime):
    from flowjobs.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        make_runtime(
            tasks=SCHED_TASKS, schedules={"x": {"task": "noop", "cron": "@hourly"}}
        ).scheduler
    [problem] = refused.value.problems
    assert problem.startswith("schedules.x: task 'noop' rejects the schedule payload")
    assert "SchedulePayload" in problem
    with pytest.raises(
        ConfigError, match="schedules.test-hourly: task 'noop' rejects"
    ):  # a declared one, moved
        make_runtime(tasks=SCHED_TASKS, schedules={"test-hourly": {"task": "noop"}}).scheduler


def test_a_schedule_that_fails_to_enqueue_is_reported_and_alerted_and_the_others_go_on(
    make_runtime, clock
):
    clock.set(ms("2030-01-01T00:20:00Z"))
    rt = make_runtime(
        tasks=WINDOW_TASKS,
        **ALERTS,
        schedules={
            "picky": {"task": "test-cron-picky", "cron": "0 * * * *"},
            "w": {"task": "test-cron-window", "cron": "0 * * * *"},
            "test-hourly": {"enabled": False},
        },
    )
    rt.scheduler.tick()
    clock.set(ms("2030-01-01T01:00:10Z"))
    assert [r.schedule for r in rt.scheduler.tick()] == ["w"]
    assert list(rt.scheduler.failures) == ["picky"]
    assert "no slots from 2030 on" in str(rt.scheduler.failures["picky"])
    [alert] = rt.store.list_runs(task="send-alert")
    assert alert["idempotency_key"] == "alert:enqueue-failed:picky:2030-01-01T01:00:00.000Z"
    rt.scheduler.tick()  # failing again: the same alert, not a second one
    assert len(rt.store.list_runs(task="send-alert")) == 1


@pytest.fixture
def icu_runtime(pg_server_url, clock, tmp_path):
    """A Runtime on a PostgreSQL database whose default collation is ICU's `en-US`, as managed
    PostgreSQL services make them (glibc's `en_US.UTF-8` likewise sorts by language, not by
    bytes): there ';' sorts before ':', so a key range `S:` … `S;` held no key at all."""
    import psycopg

    from flowjobs.store.db import Database
    from flowjobs.store.migrate import upgrade
    from tests.conftest import make_settings, new_pg_database

    url = new_pg_database(pg_server_url, template=None)
    name = url.rsplit("/", 1)[1]
    admin = pg_server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name}")
        conn.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
            "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    db = Database(url)
    upgrade(db)
    db.close()
    from flowjobs.runtime import Runtime

    schedules = {
        "hourly": {"task": "test-every-minute", "cron": "0 * * * *"},
        "test-hourly": {"enabled": False},
    }
    rt = Runtime(make_settings(url, tmp_path, tasks=SCHED_TASKS, schedules=schedules), clock=clock)
    clock.set(ms("2027-01-15T08:20:00Z"))
    yield rt
    rt.close()


def test_key_ranges_hold_under_a_language_collation(icu_runtime):
    """A backfill skips the slots that have runs, on a database that sorts text by language:
    before revision 0015 it saw none of them there and enqueued every slot again (a slot's run
    whose key had expired ran twice)."""
    rt = icu_runtime
    start, end = ms("2027-01-14T20:00:00Z"), ms("2027-01-15T02:00:00Z")
    assert rt.scheduler.backfill("hourly", start, end)["new"] == 6
    assert rt.scheduler.backfill("hourly", start, end, dry_run=True)["new"] == 0
    again = rt.scheduler.backfill("hourly", start, end)
    assert (again["new"], again["existing"]) == (0, 6)
    assert len(rt.scheduler.existing(rt.scheduler.get("hourly"))) == 6
