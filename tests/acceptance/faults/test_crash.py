"""Real worker processes: SIGKILL in the middle of work loses nothing and completes nothing
twice; SIGTERM lets running tasks finish and exits 0. On SQLite and PostgreSQL."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from flowjobs.core.client import TriggerItem
from tests.cli_helpers import cli_env, flowjobs, start_worker, wait_until


def started(folder, pid=None):
    return [p for p in folder.glob("*.started") if pid is None or p.name.split(".")[2] == str(pid)]


def test_sigkill_mid_work_then_new_worker_finishes_everything(make_runtime, tmp_path):
    rt = make_runtime(pinned=False)
    work = tmp_path / "work"
    work.mkdir()
    runs = rt.client.batch_trigger(
        [TriggerItem("test-block", {"dir": str(work)}) for _ in range(6)]
    )
    env = cli_env(rt.db.url, FLOWJOBS_WORKER_LEASE="1s", FLOWJOBS_WORKER_RESCUE_INTERVAL="100ms")
    victim = start_worker("--concurrency", "4", env=env, stderr_path=tmp_path / "victim.log")
    wait_until(lambda: len(started(work)) == 4, message="four tasks to start")
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    killed = {p.name.split(".")[0] for p in started(work)}

    (work / "release").touch()
    now_ms = lambda: int(time.time() * 1000)  # noqa: E731
    wait_until(
        lambda: all(rt.store.get_run(i)["lease_expires_at"] < now_ms() for i in killed),
        message="the killed worker's leases to expire",
    )
    survivor = flowjobs("run-worker", "--burst", "--concurrency", "4", env=env, timeout=120)
    assert survivor.returncode == 0, survivor.stderr

    assert rt.store.count_by_status() == {"completed": 6}
    completions = Counter((work / "completed.log").read_text().split())
    assert completions == Counter({r.id: 1 for r in runs})
    for run_id in killed:
        assert [a["outcome"] for a in rt.store.attempts(run_id)] == ["crashed", "succeeded"]


def test_sigterm_lets_running_tasks_finish_and_exits_0(make_runtime, tmp_path):
    rt = make_runtime(pinned=False)
    work = tmp_path / "work"
    work.mkdir()
    runs = rt.client.batch_trigger(
        [TriggerItem("test-block", {"dir": str(work)}) for _ in range(5)]
    )
    env = cli_env(rt.db.url)
    log = tmp_path / "worker.log"
    worker = start_worker(
        "--concurrency", "3", "--shutdown-timeout", "30s", env=env, stderr_path=log
    )
    wait_until(lambda: len(started(work)) == 3, message="three tasks to start")
    worker.send_signal(signal.SIGTERM)
    wait_until(
        lambda: "received SIGTERM" in log.read_text(), message="the worker to take the signal"
    )
    (work / "release").touch()
    assert worker.wait(30) == 0, log.read_text()

    statuses = Counter(rt.store.get_run(r.id)["status"] for r in runs)
    assert statuses == Counter({"completed": 3, "queued": 2})
    assert len((work / "completed.log").read_text().split()) == 3
    assert_json_lines(log, "received SIGTERM: finishing running tasks")


def test_a_second_sigterm_stops_at_once_and_gives_the_running_runs_back(make_runtime, tmp_path):
    """They were left `executing` for a whole lease (30 s by default) before any worker could
    run them again."""
    rt = make_runtime(pinned=False)
    work = tmp_path / "work"
    work.mkdir()
    runs = rt.client.batch_trigger(
        [TriggerItem("test-block", {"dir": str(work)}) for _ in range(3)]
    )
    log = tmp_path / "worker.log"
    worker = start_worker("--concurrency", "2", env=cli_env(rt.db.url), stderr_path=log)
    wait_until(lambda: len(started(work)) == 2, message="two tasks to start")
    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: "received SIGTERM:" in log.read_text(), message="the first signal")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 1, log.read_text()
    assert "received SIGTERM again: stopping now; running runs are given back" in log.read_text()
    rows = [rt.store.get_run(r.id) for r in runs]
    assert Counter(r["status"] for r in rows) == Counter({"retrying": 2, "queued": 1})
    given = [r for r in rows if r["status"] == "retrying"]
    assert all(r["crashes"] == 1 and r["lease_expires_at"] is None for r in given), given
    assert "stopped at once: run" in log.read_text()
    [stopped] = rt.store.workers(0)  # not `alive` (and counted on by `trigger --wait`) for a lease
    assert stopped["stopped_at"] is not None


def assert_json_lines(log, said: str) -> None:
    """stderr is a file, so the log is JSON lines (`--log-format auto`): every line of it, the
    signal handler's too (that one was plain text amid them)."""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    [line] = [line for line in lines if line["message"].startswith(said)]
    assert line["level"] == "warning"


def test_supervisor_restarts_a_killed_child_and_stops_on_sigterm(make_runtime, tmp_path):
    rt = make_runtime(pinned=False)
    work = tmp_path / "work"
    work.mkdir()
    rt.client.batch_trigger([TriggerItem("test-block", {"dir": str(work)}) for _ in range(2)])
    env = cli_env(rt.db.url, FLOWJOBS_WORKER_LEASE="1s", FLOWJOBS_WORKER_RESCUE_INTERVAL="100ms")
    log = tmp_path / "supervisor.log"
    supervisor = start_worker("--processes", "2", "--concurrency", "1", env=env, stderr_path=log)
    wait_until(lambda: len(started(work)) == 2, message="both children to start a task")
    pids = {int(p.name.split(".")[2]) for p in started(work)}
    assert len(pids) == 2  # one task in each child process
    victim = pids.pop()
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: "restarting" in log.read_text(), message="the supervisor to restart the child"
    )
    # the restarted child rescues the killed task once its lease expires and runs it again
    wait_until(
        lambda: len(started(work)) == 3, timeout=30, message="the rescued task to start again"
    )
    (work / "release").touch()
    wait_until(
        lambda: rt.store.count_by_status() == {"completed": 2}, message="both runs to complete"
    )
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0, log.read_text()
    assert_json_lines(log, "received SIGTERM: stopping 2 worker processes")


def test_supervisor_stops_with_a_childs_configuration_or_database_error(tmp_path):
    """A database that cannot be opened is found before any child starts: said once, exit 4
    (each child used to say it, then the supervisor stopped the others)."""
    env = cli_env(f"sqlite:///{tmp_path}/no-such-folder/flowjobs.db")
    done = flowjobs("run-worker", "--processes", "2", env=env, timeout=60)
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith("error: cannot open database ") and done.stderr.count("\n") == 1
    assert "started worker process" not in done.stderr and "restarting" not in done.stderr


class Supervised:
    """`run-worker --processes 2 --concurrency 1` as a terminal runs it (the leader of a process
    group that a Ctrl-C reaches as a whole), each child blocked in a `test-block` task. Whatever
    a test leaves running is killed on the way out: children lead groups of their own, so
    killing the supervisor's group would not reach them."""

    def __init__(self, rt, tmp_path):
        self.rt, self.work, self.log = rt, tmp_path / "work", tmp_path / "supervisor.log"
        self.work.mkdir()
        rt.client.batch_trigger(
            [TriggerItem("test-block", {"dir": str(self.work)}) for _ in range(2)]
        )
        with open(self.log, "w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flowjobs", "run-worker", "--processes", "2"]
                + ["--concurrency", "1", "--no-scheduler"],
                env=cli_env(rt.db.url),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        wait_until(lambda: len(started(self.work)) == 2, message="both children to start a task")
        self.children = {int(p.name.split(".")[2]) for p in started(self.work)}

    def said(self, text: str) -> bool:
        return text in self.log.read_text()

    def release(self) -> None:
        (self.work / "release").touch()

    def kill_all(self) -> None:
        for pid in [self.proc.pid, *self.children]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)


@pytest.fixture
def supervised(make_runtime, tmp_path):
    box = []
    yield lambda: box.append(Supervised(make_runtime(pinned=False), tmp_path)) or box[0]
    for s in box:
        s.kill_all()


def gone(pid):  # exited: no such process, or a zombie its new parent has not reaped yet
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_ctrl_c_on_a_supervisor_lets_every_child_finish_its_tasks(supervised):
    """A terminal's Ctrl-C is sent to the whole foreground group. Each child used to take it and
    the supervisor's forwarded SIGTERM as two signals ("stop at once") and leave its runs to the
    rescuer; now only the supervisor hears it, says so once, and the children finish."""
    s = supervised()
    os.killpg(s.proc.pid, signal.SIGINT)
    wait_until(lambda: s.said("received SIGINT"), message="the supervisor to say so")
    assert s.proc.poll() is None  # still waiting for the running tasks
    s.release()
    assert s.proc.wait(30) == 0, s.log.read_text()
    assert s.rt.store.count_by_status() == {"completed": 2}
    text = s.log.read_text()
    assert text.count("received") == 1, text  # one line for all, no "again", no SIGTERM
    assert "received SIGINT: stopping 2 worker processes (each finishes its running tasks" in text


def test_systemd_stopping_every_process_of_the_unit_lets_the_children_finish(supervised):
    """`systemctl stop` (KillMode=control-group, the default) sends SIGTERM to every process of
    the unit at once, and the supervisor forwards its own: two for each child, which a child
    under a supervisor does not take as "stop at once" (the supervisor would SIGKILL it)."""
    s = supervised()
    for pid in [s.proc.pid, *s.children]:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: s.said("received SIGTERM"), message="the supervisor to say so")
    assert s.proc.poll() is None and not any(gone(pid) for pid in s.children)
    s.release()
    assert s.proc.wait(30) == 0, s.log.read_text()
    assert s.rt.store.count_by_status() == {"completed": 2}
    assert not s.said("received SIGTERM again") and not s.said("stopping now")


def test_children_of_a_killed_supervisor_finish_their_tasks_and_exit(supervised):
    """SIGKILL to the supervisor alone (an OOM kill, `kill -9`): the kernel sends each child
    SIGTERM, so none is left running unsupervised; each finishes its task and exits."""
    s = supervised()
    s.proc.send_signal(signal.SIGKILL)
    assert s.proc.wait(10) == -signal.SIGKILL
    s.release()
    wait_until(lambda: all(gone(pid) for pid in s.children), message="the children to exit")
    assert s.rt.store.count_by_status() == {"completed": 2}


def test_a_second_ctrl_c_stops_the_children_at_once_and_exits_1(supervised):
    """As a single worker does: the second signal stops at once, each child gives its running
    runs back (they were SIGKILLed, their runs left `executing` until some other worker's
    rescuer came), and the exit code (1) says so (it was 0)."""
    s = supervised()
    os.killpg(s.proc.pid, signal.SIGINT)
    wait_until(lambda: s.said("received SIGINT:"), message="the first signal")
    os.killpg(s.proc.pid, signal.SIGINT)
    assert s.proc.wait(30) == 1, s.log.read_text()
    assert s.said("received SIGINT again: stopping the worker processes now")
    assert s.said("received SIGUSR1 (the supervisor's stop at once): stopping now")
    assert s.rt.store.count_by_status() == {"retrying": 2}  # given back, due again in 15 s
    workers = s.rt.store.workers(0)
    assert workers and all(w["stopped_at"] is not None for w in workers), workers


def test_the_children_log_in_the_supervisors_format(make_runtime, tmp_path):
    """`--log-format text` reaches the worker processes too (they wrote JSON lines on a pipe)."""
    rt = make_runtime(pinned=False)
    rt.client.batch_trigger([TriggerItem("noop") for _ in range(4)])
    done = subprocess.run(
        [sys.executable, "-m", "flowjobs", "--log-format", "text", "run-worker"]
        + ["--processes", "2", "--burst", "--no-scheduler"],
        env=cli_env(rt.db.url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert sum("flowjobs.worker" in line and " started on " in line for line in lines) == 2
    assert [line for line in lines if line.startswith("{")] == []  # no JSON line among them
