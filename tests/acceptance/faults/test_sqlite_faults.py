"""An SQLite file locked by another program past the busy timeout, and a full disk: commands
say so in one line with their own exit codes (5, 6); a running worker waits, keeps its tasks'
outcomes, and goes on by itself once the lock is released or space is freed. Nothing is lost
or half-written."""

import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from flowjobs.core.client import TriggerItem
from flowjobs.runtime import Runtime
from tests.acceptance.faults import invariants
from tests.cli_helpers import cli_env, flowjobs, start_worker, wait_until
from tests.conftest import make_settings


class LockHolder:
    """Another program holding the database with BEGIN EXCLUSIVE until released."""

    def __init__(self, path: str):
        code = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read(); c.execute('COMMIT')"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(10) == 0


def completed_lines(work) -> int:
    path = work / "completed.log"
    return len(path.read_text().split()) if path.exists() else 0


def test_a_trigger_on_a_locked_file_exits_5_naming_the_holder(sqlite_url, tmp_path):
    env = cli_env(sqlite_url, FLOWJOBS_DATABASE_BUSY_TIMEOUT="500ms")
    holder = LockHolder(sqlite_url[len("sqlite:///") :])
    try:
        refused = flowjobs("trigger", "noop", env=env)
    finally:
        holder.release()
    assert refused.returncode == 5, refused.stderr
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: database ")
    assert "is locked by python" in refused.stderr and f"(pid {holder.proc.pid})" in refused.stderr
    assert flowjobs("trigger", "noop", env=env).returncode == 0  # released: it goes through


def test_a_worker_waits_out_a_lock_held_past_its_lease_and_goes_on(tmp_path, sqlite_url):
    rt = Runtime(make_settings(sqlite_url, tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    runs = rt.client.batch_trigger(
        [TriggerItem("test-block", {"dir": str(work)}) for _ in range(3)]
    )
    env = cli_env(
        rt.db.url,
        FLOWJOBS_DATABASE_BUSY_TIMEOUT="300ms",
        FLOWJOBS_WORKER_LEASE="1s",
        FLOWJOBS_WORKER_RESCUE_INTERVAL="100ms",
    )
    log = tmp_path / "worker.log"
    worker = start_worker("--concurrency", "3", "--no-scheduler", env=env, stderr_path=log)
    try:
        wait_until(lambda: len(list(work.glob("*.started"))) == 3, message="three tasks to start")
        holder = LockHolder(rt.db.path)
        (work / "release").touch()
        wait_until(lambda: completed_lines(work) == 3, message="the tasks to finish under the lock")
        wait_until(
            lambda: "locked by another program" in log.read_text(), message="the lock to be noticed"
        )
        time.sleep(3)  # the lock outlasts the lease (1 s) three times over
        assert worker.poll() is None, log.read_text()
        holder.release()
        wait_until(
            lambda: rt.store.count_by_status() == {"completed": 3},
            message="the outcomes to be written",
        )
        for run in runs:
            assert [a["outcome"] for a in rt.store.attempts(run.id)] == ["succeeded"]
        # the worker says so once its write went through: the line may follow the commit
        wait_until(lambda: "the database is back" in log.read_text(), message="the all-clear")
        text = log.read_text()
        assert (
            text.count("locked by another program") == 1 and text.count("the database is back") == 1
        ), text
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
        invariants.check(rt.db)
    finally:
        if worker.poll() is None:
            worker.kill()
        rt.close()


def test_a_burst_started_under_a_lock_waits_it_out_ticks_again_and_exits_0(tmp_path, sqlite_url):
    """`run-worker --burst` (cron, a systemd timer) started while another program holds the
    file: its first scheduler tick fails, its worker waits the lock out and runs what is due,
    then the tick is made again — the burst did its job, exit 0. It used to exit 5 with the
    first tick's "locked … past the busy timeout", the lock long gone and the work done."""
    rt = Runtime(make_settings(sqlite_url, tmp_path))
    run = rt.trigger("noop")
    rt.close()
    env = cli_env(sqlite_url, FLOWJOBS_DATABASE_BUSY_TIMEOUT="300ms")  # builtin schedules on
    log = tmp_path / "burst.log"
    holder = LockHolder(sqlite_url[len("sqlite:///") :])
    burst = start_worker("--burst", env=env, stderr_path=log)
    try:
        wait_until(
            lambda: "locked by another program" in log.read_text(), message="the lock to be met"
        )
        assert "tick waits for the database" in log.read_text()
        assert "tick failed" not in log.read_text()  # an ERROR, and an alert, for a lock
        holder.release()
        assert burst.wait(60) == 0, log.read_text()
    finally:
        if burst.poll() is None:
            burst.kill()
    text = log.read_text()
    assert "error:" not in text and "Traceback" not in text, text
    rt = Runtime(make_settings(sqlite_url, tmp_path))
    try:
        assert rt.store.run_status(run.id) == "completed"
        assert set(rt.store.schedule_states()) == {"hourly-cron", "daily-cron"}  # ticked
    finally:
        rt.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs: a disk that fills up (the tests run as root, as CI does)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs for the full-disk test (run the tests as root): {done.stderr}"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_exit_6_and_everything_recovers_when_space_returns(
    small_disk, sqlite_template, tmp_path
):
    db_path = small_disk / "flowjobs.db"
    shutil.copy(sqlite_template, db_path)
    url = f"sqlite:///{db_path}"
    filler = small_disk / "filler"
    free = shutil.disk_usage(small_disk).free
    filler.write_bytes(b"\0" * max(free - 400_000, 0))  # leave ~400 kB
    env = cli_env(url, FLOWJOBS_WORKER_LEASE="1s", FLOWJOBS_WORKER_RESCUE_INTERVAL="100ms")
    log = tmp_path / "worker.log"
    worker = start_worker("--concurrency", "2", "--no-scheduler", env=env, stderr_path=log)
    try:
        accepted = 0
        for _ in range(200):
            done = flowjobs(
                "trigger", "hello-world", "--payload", '{"pad": "%s"}' % ("x" * 20_000), env=env
            )
            if done.returncode != 0:
                break
            accepted += 1
        assert done.returncode == 6, done.stderr
        assert done.stderr.count("\n") == 1 and "no space left for database" in done.stderr
        assert accepted > 0
        assert worker.poll() is None, log.read_text()

        filler.unlink()  # the operator frees space
        wait_until(
            lambda: flowjobs("trigger", "hello-world", env=env).returncode == 0,
            timeout=60,
            message="a trigger to go through once space is back",
        )
        accepted += 1
        conn = sqlite3.connect(db_path)
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM flowjobs_runs WHERE status = 'completed'"
                ).fetchone()[0]
                == accepted
            ),
            timeout=60,
            message="every accepted run to complete",
        )
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        assert worker.poll() is None, log.read_text()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
        from flowjobs.store.db import Database

        db = Database(url)
        invariants.check(db)
        db.close()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def test_a_read_only_database_is_exit_4_in_one_line(small_disk, sqlite_template):
    db_path = small_disk / "flowjobs.db"
    shutil.copy(sqlite_template, db_path)
    env = cli_env(f"sqlite:///{db_path}")
    assert flowjobs("trigger", "noop", env=env).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        result = flowjobs("trigger", "noop", env=env)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert result.returncode == 4, result.stderr
    assert result.stderr.count("\n") == 1 and "read-only" in result.stderr, result.stderr


def test_an_immutable_database_file_in_a_writable_folder_is_read_only_to_doctor_and_upgrade(
    tmp_path, sqlite_template
):
    """The file cannot be written but can be read (`chattr +i`; for root, permissions would not
    stop a write): `doctor` fails the database check and `db upgrade` exits 4 instead of saying
    all is well, as `trigger` does."""
    db_path = tmp_path / "flowjobs.db"
    shutil.copy(sqlite_template, db_path)
    env = cli_env(f"sqlite:///{db_path}")
    done = subprocess.run(["chattr", "+i", str(db_path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot make the file immutable (run the tests as root): {done.stderr}")
    try:
        doctor = flowjobs("doctor", env=env)
        upgrade = flowjobs("db", "upgrade", env=env)
        trigger = flowjobs("trigger", "noop", env=env)
    finally:
        subprocess.run(["chattr", "-i", str(db_path)], check=True)
    read_only = (
        f"database {db_path} is read-only: flowjobs needs to write the file and its folder "
        "(for the -wal and -shm files)"
    )
    assert doctor.returncode == 1 and f"fail database      {read_only}" in doctor.stdout, (
        doctor.stdout
    )
    assert "fix: make the file and its folder writable" in doctor.stdout
    for result in (upgrade, trigger):
        assert result.returncode == 4 and result.stderr == f"error: {read_only}\n", result.stderr


def test_a_read_only_folder_is_exit_4_in_one_line_for_every_command(small_disk, sqlite_template):
    """A database in a read-only folder (here a read-only mount: the tests run as root, for whom
    permissions do not bar writing): SQLite says only "unable to open database file"; every
    command names the file and says it is read-only (exit 4), `db upgrade` too (it used to end
    in "unexpected OSError … report it"); doctor fails the check with the fix."""
    existing, new = small_disk / "flowjobs.db", small_disk / "new.db"
    shutil.copy(sqlite_template, existing)
    env = {
        k: v for k, v in cli_env(f"sqlite:///{existing}").items() if k != "FLOWJOBS_DATABASE_URL"
    }
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        results = [
            (path, flowjobs("--database", str(path), *args, env=env))
            for path, args in (
                (new, ["db", "upgrade"]),
                (new, ["trigger", "noop"]),
                (existing, ["trigger", "noop"]),
                (existing, ["runs", "list"]),
                (existing, ["db", "status"]),
            )
        ]
        doctor = flowjobs("--database", str(existing), "doctor", env=env)
        doctor_new = flowjobs("--database", str(new), "doctor", env=env)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    for path, result in results:
        assert result.returncode == 4, (result.args, result.stderr)
        assert result.stderr == (
            f"error: database {path} is read-only: flowjobs needs to write the file and its "
            "folder (for the -wal and -shm files)\n"
            if path == existing
            else f"error: cannot create database {path}: its folder {small_disk} is not writable\n"
        ), result.stderr
    assert doctor.returncode == 1 and f"database {existing} is read-only" in doctor.stdout
    assert "make the file and its folder writable" in doctor.stdout
    assert (
        "copy the file (and its -wal file, if there is one) to a writable folder" in doctor.stdout
    )
    assert doctor_new.returncode == 1 and "its folder is read-only" in doctor_new.stdout
    assert not new.exists()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_worker_whose_database_file_is_deleted_or_replaced_stops_with_exit_4(
    how, tmp_path, sqlite_template
):
    """`rm flowjobs.db*` (or a restored copy moved into its place) under a running worker: it
    went on writing to the file it had open, unseen, while `trigger` made a new database whose
    runs nobody ran — and what it wrote was lost when it stopped. It now stops within a second
    or two, saying why, with exit code 4; started again, it uses the file now at the path."""
    db_path = tmp_path / "flowjobs.db"
    shutil.copy(sqlite_template, db_path)
    env = cli_env(f"sqlite:///{db_path}")
    log = tmp_path / "worker.log"
    worker = start_worker("--no-scheduler", env=env, stderr_path=log)
    try:
        wait_until(lambda: "started on" in log.read_text(), message="the worker to start")
        if how == "deleted":
            for path in tmp_path.glob("flowjobs.db*"):
                path.unlink()
        else:
            shutil.copy(sqlite_template, tmp_path / "restored.db")
            (tmp_path / "restored.db").replace(db_path)
        code = worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
    text = log.read_text()
    reason = "was deleted" if how == "deleted" else "was replaced by another file"
    assert code == 4, text
    assert f"database file {db_path} {reason} while this worker ran: stopping" in text, text
    assert "Traceback" not in text

    run_id = flowjobs("trigger", "noop", env=env).stdout.strip()
    again = flowjobs("run-worker", "--burst", "--no-scheduler", env=env)
    assert again.returncode == 0, again.stderr
    shown = flowjobs("runs", "show", run_id, "--json", env=env)
    assert '"status": "completed"' in shown.stdout, shown.stdout


def test_serve_and_run_scheduler_stop_with_exit_4_when_the_database_file_is_deleted(
    tmp_path, sqlite_template
):
    """`serve` answered 200 for webhooks it wrote into the deleted file (the sender never sent
    them again, and nothing ran them); `run-scheduler` went on enqueueing into it. They now
    answer 503 (the sender retries) and stop with exit code 4, as a worker does."""
    import json as _json

    from tests.cli_helpers import serving
    from tests.integration.test_webhooks_http import post, sign

    db_path = tmp_path / "flowjobs.db"
    shutil.copy(sqlite_template, db_path)
    env = cli_env(f"sqlite:///{db_path}", FLOWJOBS_STRIPE_WEBHOOK_SECRET="whsec_test")
    scheduler_log = tmp_path / "scheduler.log"
    with open(scheduler_log, "w") as stderr:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "flowjobs", "run-scheduler"], env=env, stderr=stderr
        )
    try:
        with serving(env, tmp_path / "serve.log") as (server, base):
            wait_until(lambda: "scheduler started" in scheduler_log.read_text())
            for path in tmp_path.glob("flowjobs.db*"):
                path.unlink()
            body = _json.dumps(
                {
                    "id": "evt_1Gone",
                    "object": "event",
                    "type": "payment_intent.succeeded",
                    "livemode": False,
                    "created": int(time.time()),
                    "data": {"object": {"id": "pi_1", "object": "payment_intent"}},
                }
            ).encode()
            status, answer = post(
                f"{base}/webhooks/stripe/testmode", body, sign(body, secret="whsec_test")
            )
            assert status == 503, answer
            assert server.wait(15) == 4
            assert scheduler.wait(15) == 4
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
    served = (tmp_path / "serve.log").read_text()
    # "replaced" when the other process had already opened a new file at the path
    gone = ("was deleted", "was replaced by another file")
    assert any(f"database file {db_path} {how} while serve ran: stopping" in served for how in gone)
    ticked = scheduler_log.read_text()
    assert any(f"database file {db_path} {how} while run-scheduler ran" in ticked for how in gone)
    assert "Traceback" not in served + ticked


def test_a_tick_under_a_lock_waits_it_out_as_an_outage_without_alerting_a_slot(
    make_runtime, sqlite_url, clock, caplog
):
    """An SQLite lock past the busy timeout made the tick log `schedule …: tick failed` as an
    ERROR and email an alert naming a slot that was not even due; a PostgreSQL restart (the
    same kind of wait) raises nothing of the kind."""
    rt = make_runtime(
        database={"url": sqlite_url, "busy_timeout": "200ms"},
        alerts={"email": ["ops@example.com"]},
        tasks={"modules": ["tests.tasks_for_tests", "tests.scheduled_tasks"]},
        schedules={"minutely": {"task": "test-every-minute", "cron": "* * * * *"}},
    )
    rt.scheduler.tick()  # first sight of every schedule
    holder = LockHolder(sqlite_url.removeprefix("sqlite:///"))
    try:
        with caplog.at_level("WARNING", logger="flowjobs.scheduler"):
            rt.scheduler.tick()
        failed = rt.scheduler.failures  # kept: `tick` exits 5, a burst ticks again
        assert "minutely" in failed and all(rt.db.is_transient(e) for e in failed.values())
    finally:
        holder.release()
    said = [r for r in caplog.records if r.name == "flowjobs.scheduler"]
    assert {r.levelname for r in said} == {"WARNING"}
    assert any("schedule minutely: tick waits for the database" in r.message for r in said)
    assert rt.store.count_runs(task="send-alert") == 0
    rt.scheduler.tick()  # the lock gone: nothing to report
    assert rt.store.count_runs(task="send-alert") == 0


def catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler for `signum` (its SigCgt mask in /proc)."""
    with open(f"/proc/{pid}/status") as status:
        mask = next(line for line in status if line.startswith("SigCgt:")).split()[1]
    return bool(int(mask, 16) >> (signum - 1) & 1)


def test_a_second_sigterm_stops_a_worker_waiting_on_a_lock_without_waiting_for_it(
    tmp_path, sqlite_url
):
    """A worker that meets another program's lock (a 60 s busy timeout) and is told to stop at
    once (SIGTERM twice) exits 1 without waiting the lock out: the give-back waits for the
    database at most STOP_NOW_WAIT (5 s). (The signals reach the signal thread from the
    interpreter's C-level handler, `signal.set_wakeup_fd`: a Python handler runs only once the
    main thread is back from C, and a main thread in SQLite's busy wait took them as late as
    the busy timeout in a trial; this test's worker is not caught there, so it guards the stop,
    not that.)"""
    rt = Runtime(make_settings(sqlite_url, tmp_path))
    rt.trigger("noop")
    rt.close()
    env = cli_env(sqlite_url, FLOWJOBS_DATABASE_BUSY_TIMEOUT="60s")
    log = tmp_path / "worker.log"
    holder = LockHolder(sqlite_url[len("sqlite:///") :])
    worker = start_worker(
        "--no-scheduler", "--concurrency", "1", "--shutdown-timeout", "1s", env=env, stderr_path=log
    )
    try:
        wait_until(lambda: catches(worker.pid, signal.SIGUSR1), timeout=30)  # its handlers set
        worker.send_signal(signal.SIGTERM)
        wait_until(lambda: "received SIGTERM:" in log.read_text(), timeout=30)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 1, log.read_text()  # not after the 60 s busy timeout
    finally:
        holder.release()
        if worker.poll() is None:
            worker.kill()
    assert "received SIGTERM again: stopping now" in log.read_text()


def test_serves_health_check_fails_once_its_database_file_is_gone(tmp_path, sqlite_template):
    """`/healthz` answered 200 over a deleted file: a load balancer kept sending webhooks to a
    server that wrote them where nobody would see them."""
    from tests.cli_helpers import serving
    from tests.integration.test_webhooks_http import post

    db_path = tmp_path / "flowjobs.db"
    shutil.copy(sqlite_template, db_path)
    with serving(cli_env(f"sqlite:///{db_path}"), tmp_path / "serve.log") as (server, base):
        assert post(f"{base}/healthz", b"", method="GET")[0] == 200
        for path in tmp_path.glob("flowjobs.db*"):
            path.unlink()
        status, _ = post(f"{base}/healthz", b"", method="GET")
        assert status == 503
        assert server.wait(15) == 4
