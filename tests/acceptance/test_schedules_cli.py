"""Schedules from the command line, and exactly one run per slot with many schedulers."""

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from flowjobs.core.clock import iso, parse_iso
from tests.cli_helpers import as_json, cli_env, flowjobs

CONFIG = """
[scheduler]
interval = "20ms"
[schedules.minutely]
task = "test-every-minute"
cron = "* * * * *"
catchup = "all"
max_catchup = 1000
[schedules.test-hourly]
enabled = false
"""


def sched_env(db_url, **extra):
    return cli_env(
        db_url, FLOWJOBS_TASKS_MODULES="tests.tasks_for_tests,tests.scheduled_tasks", **extra
    )


def test_four_schedulers_and_two_tick_loops_make_one_run_per_slot(db_url, tmp_path):
    config = tmp_path / "flowjobs.toml"
    config.write_text(CONFIG)
    speed = 600  # one simulated minute every 100 ms
    env = sched_env(
        db_url,
        FLOWJOBS_CONFIG=str(config),
        FLOWJOBS_CLOCK=f"2027-03-01T00:00:30Z x{speed} @{time.time() + 3:.3f}",
    )
    flowjobs("db", "upgrade", env=env)
    schedulers = [
        subprocess.Popen(
            [sys.executable, "-m", "flowjobs", "run-scheduler"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    stop = threading.Event()
    tick_failures = []

    def tick_loop():
        while not stop.is_set():
            result = flowjobs("tick", env=env)
            if result.returncode != 0:
                tick_failures.append(result.stderr)

    loops = [threading.Thread(target=tick_loop) for _ in range(2)]
    for loop in loops:
        loop.start()
    time.sleep(3 + 90 * 60 / speed + 1)  # the shared clock starts in 3 s, then 90 slots pass
    stop.set()
    for loop in loops:
        loop.join(30)
    for proc in schedulers:
        proc.send_signal(signal.SIGTERM)
    for proc in schedulers:
        code = proc.wait(30)
        assert code == 0, f"run-scheduler exited {code}: {proc.stderr.read()[-2000:]}"
    assert tick_failures == [], tick_failures[:2]

    runs = as_json(
        flowjobs(
            "runs", "list", "--task", "test-every-minute", "--limit", "1000", "--json", env=env
        )
    )
    health = {h["id"]: h for h in as_json(flowjobs("schedules", "health", "--json", env=env))}
    assert health["minutely"]["duplicated"] == []
    slots = sorted(parse_iso(t) for t in _payload_times(env, runs))
    assert len(slots) == len(set(slots)), "a slot ran twice"
    assert len(slots) >= 60, f"only {len(slots)} consecutive slots in about 90 simulated minutes"
    assert all(b - a == 60_000 for a, b in zip(slots, slots[1:])), "a slot is missing"


def _payload_times(env, runs):
    from flowjobs.config import load_settings
    from flowjobs.runtime import Runtime

    rt = Runtime(load_settings(environ=env))
    times = [json.loads(rt.store.get_run(r["id"])["payload"])["timestamp"] for r in runs]
    rt.close()
    return times


def at(env: dict, moment: str) -> dict:
    """`env` with the clock starting at `moment` (`tick --now` refuses a time later than now)."""
    return {**env, "FLOWJOBS_CLOCK": f"{moment} x1 @{time.time():.3f}"}


@pytest.fixture
def env(sqlite_url, tmp_path):
    config = tmp_path / "flowjobs.toml"
    config.write_text(CONFIG)
    return sched_env(sqlite_url, FLOWJOBS_CONFIG=str(config))


def test_tasks_list_shows_the_schedules_configured_on_a_task(env, tmp_path):
    """Its schedule column showed only a cron declared on the task: blank for one configured."""
    tasks = {t["id"]: t for t in as_json(flowjobs("tasks", "list", "--json", env=env))}
    assert tasks["test-every-minute"]["schedules"] == [
        {"id": "minutely", "cron": "* * * * *", "timezone": "UTC", "enabled": True}
    ]
    assert tasks["test-hourly"]["schedules"][0]["enabled"] is False  # disabled in the config
    table = flowjobs("tasks", "list", env=env).stdout
    [line] = [x for x in table.splitlines() if x.startswith("test-every-minute\t")]
    assert "* * * * * UTC (minutely)" in line
    # a schedule naming a task that is not there: the list is how one finds the right id
    config = tmp_path / "typo.toml"
    config.write_text('[schedules.nightly]\ntask = "hello-wrld"\ncron = "@daily"\n')
    typo = flowjobs("tasks", "list", env={**env, "FLOWJOBS_CONFIG": str(config)})
    assert typo.returncode == 0 and "hello-world" in typo.stdout
    assert "schedules left out (schedules.nightly.task: unknown task 'hello-wrld'" in typo.stderr
    # a task module that cannot be imported: no list to show, and said once (it was said twice,
    # first as a note that schedules were left out)
    broken = flowjobs("tasks", "list", env={**env, "FLOWJOBS_TASKS_MODULES": "nomod"})
    assert broken.returncode == 2 and broken.stdout == ""
    assert broken.stderr.count("cannot import 'nomod'") == 1, broken.stderr
    assert "schedules left out" not in broken.stderr


def test_schedule_commands(env):
    listed = as_json(flowjobs("schedules", "list", "--json", env=env))
    by_id = {s["id"]: s for s in listed}
    assert by_id["minutely"]["cron"] == "* * * * *" and by_id["minutely"]["catchup"] == "all"
    assert by_id["test-hourly"]["enabled"] is False and len(by_id["minutely"]["next_slots"]) == 3

    assert flowjobs("tick", env=at(env, "2027-01-01T00:00:30Z")).stdout == ""  # first sight
    ticked = flowjobs("tick", env=at(env, "2027-01-01T00:03:10Z")).stdout.splitlines()
    assert [line.split("\t")[1] for line in ticked] == [
        "2027-01-01T00:01:00.000Z",
        "2027-01-01T00:02:00.000Z",
        "2027-01-01T00:03:00.000Z",
    ]

    preview = as_json(
        flowjobs(
            "schedules",
            "preview",
            "minutely",
            "--from",
            "2027-01-01T00:00:00Z",
            "--to",
            "2027-01-01T00:02:00Z",
            "--json",
            env=env,
        )
    )
    assert [(p["lastTimestamp"], p["timestamp"]) for p in preview] == [
        ("2027-01-01T00:00:00.000Z", "2027-01-01T00:01:00.000Z"),
        ("2027-01-01T00:01:00.000Z", "2027-01-01T00:02:00.000Z"),
    ]
    # a day of a per-minute schedule: the first 1,000 slots, and a note says so (it stopped
    # there without a word)
    day = flowjobs("schedules", "preview", "minutely", "--from", "2027-01-01T00:00:00Z", env=env)
    assert len(day.stdout.splitlines()) == 1 + 1000  # the header and the slots
    assert "showing the first 1,000 slots, up to 2027-01-01T16:40:00.000Z" in day.stderr

    report = as_json(
        flowjobs(
            "schedules",
            "backfill",
            "minutely",
            "--from",
            "2027-01-01T00:00:00Z",
            "--to",
            "2027-01-01T00:05:00Z",
            "--json",
            env=at(env, "2027-01-01T00:08:00Z"),
        )
    )
    assert (report["slots"], report["new"], report["existing"]) == (5, 2, 3)
    again = flowjobs(
        "schedules",
        "backfill",
        "minutely",
        "--from",
        "2027-01-01T00:00:00Z",
        "--to",
        "2027-01-01T00:05:00Z",
        env=at(env, "2027-01-01T00:08:00Z"),
    )
    assert "enqueued 0, 5 already had a run" in again.stdout
    # slots still to come are the scheduler's; a range of many slots needs --yes
    future = flowjobs(
        "schedules", "backfill", "minutely", "--from", "2027-01-01T00:00:00Z", "--to",
        "2027-01-01T00:30:00Z", env=at(env, "2027-01-01T00:08:00Z"),
    )  # fmt: skip
    assert future.returncode == 2 and "is later than now" in future.stderr, future.stderr
    week = ["schedules", "backfill", "minutely", "--from", "2020-01-01T00:00:00Z", "--to"]
    week += ["2020-01-08T00:00:00Z"]  # a week of minutes
    refused = flowjobs(*week, env=at(env, "2027-01-01T00:08:00Z"))
    assert refused.returncode == 2 and "holds 10,080 slots of minutely" in refused.stderr
    assert "add --yes" in refused.stderr
    dry = flowjobs(*week, "--dry-run", env=at(env, "2027-01-01T00:08:00Z"))
    assert dry.returncode == 0 and "10080 slots, would enqueue 10080" in dry.stdout

    assert flowjobs("schedules", "disable", "minutely", env=env).returncode == 0
    listed = {s["id"]: s for s in as_json(flowjobs("schedules", "list", "--json", env=env))}
    assert listed["minutely"]["enabled"] is False and listed["hourly-cron"]["enabled"] is True
    assert (listed["minutely"]["enabled_override"], listed["hourly-cron"]["enabled_override"]) == (
        False,
        None,
    )  # the config's `enabled` no longer decides; `list` says what does
    table = flowjobs("schedules", "list", env=env).stdout
    assert "no (schedules disable)" in table
    assert flowjobs("tick", env=at(env, "2027-01-01T00:09:00Z")).stdout == ""
    assert flowjobs("schedules", "enable", "minutely", env=env).returncode == 0

    manual = as_json(flowjobs("schedules", "trigger", "minutely", "--json", env=env))
    shown = as_json(flowjobs("runs", "show", manual["id"], "--json", env=env))
    assert shown["idempotency_key"].startswith("minutely:manual:")
    assert shown["payload"]["scheduleId"] == "minutely"


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["schedules", "preview", "nope"], 3, "no schedule 'nope'"),
        (["schedules", "trigger", "nope"], 3, "no schedule 'nope'"),
        (["schedules", "preview", "minutely", "--from", "yesterday"], 2, "--from"),
        (
            [
                "schedules",
                "backfill",
                "minutely",
                "--from",
                "2027-01-02T00:00:00Z",
                "--to",
                "2027-01-01T00:00:00Z",
            ],
            2,
            "--to must be after",
        ),
        (["tick", "--now", "soon"], 2, "--now"),
    ],
)
def test_schedule_command_mistakes(env, args, code, message):
    result = flowjobs(*args, env=env)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_tick_refuses_a_time_later_than_now_and_changes_nothing(env):
    # A tick "as of" a later time counted every slot up to it as done (the schedule's last
    # slot moved there) and enqueued runs that waited until then: a mistyped date delayed
    # hourly billing by hours, and the ticks in between enqueued nothing.
    assert flowjobs("tick", "--now", "2999-01-01T00:00:00Z", env=env).returncode == 2
    now = at(env, "2027-01-01T00:00:30Z")
    assert flowjobs("tick", env=now).returncode == 0  # first sight: the last slot is 00:00
    before = as_json(flowjobs("schedules", "list", "--json", env=now))
    result = flowjobs("tick", "--now", "2027-01-01T05:30:00Z", env=now)
    assert result.returncode == 2, result.stderr
    assert "--now 2027-01-01T05:30:00.000Z is later than now" in result.stderr
    assert "Traceback" not in result.stderr
    assert as_json(flowjobs("schedules", "list", "--json", env=now)) == before
    assert as_json(flowjobs("runs", "list", "--json", env=now)) == []
    earlier = flowjobs("tick", "--now", "2027-01-01T00:00:10Z", env=now)
    assert earlier.returncode == 0 and earlier.stdout == ""  # an earlier time is allowed


def test_list_and_health_say_when_the_schedulers_fire_another_definition(env, tmp_path):
    import os

    now = at(env, "2027-01-01T00:00:30Z")
    config = tmp_path / "flowjobs.toml"
    os.utime(config, (1_700_000_000, 1_700_000_000))
    assert flowjobs("tick", env=now).returncode == 0  # a scheduler with the file as it was
    config.write_text(CONFIG.replace('cron = "* * * * *"', 'cron = "*/5 * * * *"'))  # edited
    for command in (["schedules", "list"], ["schedules", "health"]):
        result = flowjobs(*command, env=now)
        assert result.returncode == 0, result.stderr
        assert (
            "minutely: the schedulers fire it as a configuration written at "
            "2023-11-14T22:13:20.000Z defines it: "
            'cron "* * * * *" (here: "*/5 * * * *"); this configuration is newer'
        ) in result.stderr
    [listed] = [
        s
        for s in as_json(flowjobs("schedules", "list", "--json", env=now))
        if s["id"] == "minutely"
    ]
    assert listed["fired_as"]["changed"] == {"cron": ["* * * * *", "*/5 * * * *"]}
    assert listed["fired_as"]["superseded"] is False
    assert flowjobs("tick", env=at(env, "2027-01-01T00:01:30Z")).returncode == 0  # takes over
    assert "schedulers fire it as" not in flowjobs("schedules", "list", env=now).stderr
    config.write_text(CONFIG)  # the old file again, but older than the edited one was
    os.utime(config, (1_700_000_000, 1_700_000_000))
    older = flowjobs("schedules", "list", env=now).stderr
    assert 'cron "*/5 * * * *" (here: "* * * * *"); this configuration is older' in older
    stale = flowjobs("tick", env=at(env, "2027-01-01T00:05:30Z"))  # a crontab not updated
    assert stale.returncode == 0 and "minutely" not in stale.stdout  # fires neither cron
    assert "schedule minutely: not fired by this process" in stale.stderr


def test_invalid_cron_or_timezone_in_config_exits_2_naming_the_field(sqlite_url, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[schedules.x]\ntask = "noop"\ncron = "99 * * * *"\ntimezone = "Moon/Base"\n')
    result = flowjobs("schedules", "list", env=sched_env(sqlite_url, FLOWJOBS_CONFIG=str(config)))
    assert result.returncode == 2
    assert "schedules.x.cron:" in result.stderr and "schedules.x.timezone:" in result.stderr
    # with no database yet too: it said "no database at …" (exit 4) until something made one
    nowhere = sched_env(f"sqlite:///{tmp_path / 'none.db'}", FLOWJOBS_CONFIG=str(config))
    for command in (["schedules", "list"], ["schedules", "health"]):
        result = flowjobs(*command, env=nowhere)
        assert result.returncode == 2 and "schedules.x.cron:" in result.stderr, result.stderr
    assert not (tmp_path / "none.db").exists()


def test_burst_worker_ticks_once_then_drains(env):
    five_minutes_ago = iso(int(time.time() * 1000) - 5 * 60_000)
    flowjobs("tick", "--now", five_minutes_ago, env=env)  # first sight, five minutes ago
    result = flowjobs("run-worker", "--burst", env=env)
    assert result.returncode == 0, result.stderr
    runs = as_json(flowjobs("runs", "list", "--task", "test-every-minute", "--json", env=env))
    assert 4 <= len(runs) <= 6  # the slots of the last five minutes, caught up by the burst tick
    assert {r["status"] for r in runs} == {"completed"}


def test_no_scheduler_worker_fires_no_slot(env):
    five_minutes_ago = iso(int(time.time() * 1000) - 5 * 60_000)
    flowjobs("tick", "--now", five_minutes_ago, env=env)
    result = flowjobs("run-worker", "--burst", "--no-scheduler", env=env)
    assert result.returncode == 0, result.stderr
    assert as_json(flowjobs("runs", "list", "--task", "test-every-minute", "--json", env=env)) == []
    ticked = {r["schedule"]: r for r in as_json(flowjobs("tick", "--json", env=env))}
    assert len(ticked["minutely"]["runs"]) >= 4  # the slots were still due


def test_long_running_worker_fires_and_runs_its_schedules(sqlite_url, tmp_path):
    import subprocess
    import sys

    from tests.cli_helpers import wait_until

    config = tmp_path / "flowjobs.toml"
    config.write_text(CONFIG)
    env = sched_env(
        sqlite_url,
        FLOWJOBS_CONFIG=str(config),
        FLOWJOBS_CLOCK=f"2027-03-01T00:00:30Z x600 @{time.time():.3f}",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "flowjobs", "run-worker"], env=env, stderr=subprocess.PIPE, text=True
    )

    def completed():
        runs = as_json(flowjobs("runs", "list", "--task", "test-every-minute", "--json", env=env))
        return len([r for r in runs if r["status"] == "completed"]) >= 3

    wait_until(completed, timeout=60, message="scheduled runs to fire and complete")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.stderr.read()[-2000:]


# -- issue 12: a schedule that can never run; failing to enqueue is a failure -------------------
def test_a_schedule_whose_task_rejects_the_payload_exits_2_naming_both(sqlite_url, tmp_path):
    config = tmp_path / "noop.toml"
    config.write_text('[schedules.nightly]\ntask = "noop"\ncron = "@daily"\n')
    env = sched_env(sqlite_url, FLOWJOBS_CONFIG=str(config))
    for command in (["tick"], ["schedules", "list"], ["run-scheduler"], ["run-worker", "--burst"]):
        result = flowjobs(*command, env=env)
        assert result.returncode == 2, (command, result.stderr)
        assert "schedules.nightly: task 'noop' rejects the schedule payload" in result.stderr
        assert "Traceback" not in result.stderr


PICKY = (
    CONFIG
    + """
[schedules.picky]
task = "test-cron-picky"
cron = "* * * * *"
"""
)


@pytest.fixture
def picky_env(sqlite_url, tmp_path):
    config = tmp_path / "flowjobs.toml"
    config.write_text(PICKY)
    return cli_env(
        sqlite_url,
        FLOWJOBS_CONFIG=str(config),
        FLOWJOBS_TASKS_MODULES="tests.tasks_for_tests,tests.scheduled_tasks,tests.acceptance.faults.cron_tasks",
    )


def test_tick_exits_1_when_a_schedule_fails_to_enqueue_and_still_enqueues_the_others(picky_env):
    assert flowjobs("tick", env=at(picky_env, "2029-12-31T23:58:30Z")).returncode == 0  # first
    result = flowjobs("tick", env=at(picky_env, "2030-01-01T00:00:10Z"))
    assert result.returncode == 1, result.stderr
    assert (
        "schedule picky failed to enqueue" in result.stderr
        and "no slots from 2030 on" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert [
        line.split("\t")[:2] for line in result.stdout.splitlines() if line.startswith("minutely")
    ] == [["minutely", "2029-12-31T23:59:00.000Z"], ["minutely", "2030-01-01T00:00:00.000Z"]]
    picked = as_json(flowjobs("runs", "list", "--task", "test-cron-picky", "--json", env=picky_env))
    assert picked == []


def test_run_scheduler_exits_1_when_a_schedule_fails_to_enqueue(picky_env):
    env = {**picky_env, "FLOWJOBS_CLOCK": f"2029-12-31T23:59:58Z x1 @{time.time():.3f}"}
    proc = subprocess.run(
        [sys.executable, "-m", "flowjobs", "run-scheduler"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "schedule picky failed to enqueue" in proc.stderr and "Traceback" not in proc.stderr


def test_manual_trigger_since(env):
    manual = as_json(
        flowjobs(
            "schedules", "trigger", "minutely", "--since", "2026-01-01T00:00:00Z", "--json", env=env
        )
    )
    shown = as_json(flowjobs("runs", "show", manual["id"], "--json", env=env))
    assert shown["payload"]["lastTimestamp"].startswith("2026-01-01T00:00:00")
    result = flowjobs(
        "schedules", "trigger", "minutely", "--since", "2999-01-01T00:00:00Z", env=env
    )
    assert result.returncode == 2 and "--since must be before now" in result.stderr


def test_health_exits_1_naming_a_lost_window_and_its_fix(sqlite_url, tmp_path):
    config = tmp_path / "flowjobs.toml"
    config.write_text(
        '[schedules.often]\ntask = "test-every-minute"\ncron = "* * * * *"\ncatchup = "skip"\n'
        "[schedules.hourly-cron]\nenabled = false\n[schedules.daily-cron]\nenabled = false\n"
    )
    env = sched_env(sqlite_url, FLOWJOBS_CONFIG=str(config))

    def at(moment):
        return {**env, "FLOWJOBS_CLOCK": f"{moment} x1 @{time.time():.3f}"}

    flowjobs("tick", env=at("2027-01-01T00:00:30Z"))
    [line] = flowjobs("tick", env=at("2027-01-01T00:01:05Z")).stdout.splitlines()
    assert (
        flowjobs("runs", "cancel", line.split("\t")[2], env=at("2027-01-01T00:01:10Z")).returncode
        == 0
    )
    flowjobs(
        "tick", env=at("2027-01-01T00:05:05Z")
    )  # skip: 00:02..00:04 are skipped, and the lost minute with them
    result = flowjobs("schedules", "health", env=at("2027-01-01T00:05:30Z"))
    assert result.returncode == 1, result.stderr
    assert (
        "often: window 2027-01-01T00:00:00.000Z -> 2027-01-01T00:01:00.000Z lost" in result.stderr
        and "fix: flowjobs schedules trigger often --since 2027-01-01T00:00:00.000Z"
        in result.stderr
    )
    report = {
        h["id"]: h
        for h in json.loads(
            flowjobs("schedules", "health", "--json", env=at("2027-01-01T00:05:40Z")).stdout
        )
    }
    assert report["often"]["status"] == "lost" and report["often"]["failed"] == [
        "2027-01-01T00:01:00.000Z"
    ]


def test_run_worker_burst_exits_1_when_a_schedule_fails_to_enqueue(picky_env):
    env = {**picky_env, "FLOWJOBS_CLOCK": f"2029-12-31T23:58:30Z x1 @{time.time():.3f}"}
    assert (
        flowjobs("run-worker", "--burst", env=env).returncode == 0
    )  # first sight, well before 2030
    env["FLOWJOBS_CLOCK"] = f"2030-01-01T00:00:10Z x1 @{time.time():.3f}"
    result = flowjobs("run-worker", "--burst", env=env)
    assert result.returncode == 1, result.stderr
    assert "schedule picky failed to enqueue" in result.stderr and "Traceback" not in result.stderr
