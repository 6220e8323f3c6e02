"""Real worker processes: SIGKILL in the middle of work loses nothing and completes nothing
twice; SIGTERM lets running tasks finish and exits 0. On SQLite and PostgreSQL."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

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


def test_supervisor_stops_with_a_childs_configuration_or_database_error(tmp_path):
    env = cli_env(f"sqlite:///{tmp_path}/no-such-folder/flowjobs.db")
    done = flowjobs("run-worker", "--processes", "2", env=env, timeout=60)
    assert done.returncode == 4, done.stderr
    assert "stopping the others" in done.stderr and "restarting" not in done.stderr


def _supervisor_in_its_own_session(env, log):
    """`run-worker --processes 2` as a terminal runs it: the leader of a process group that a
    Ctrl-C reaches as a whole."""
    with open(log, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "flowjobs", "run-worker", "--processes", "2"]
            + ["--concurrency", "1", "--no-scheduler"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


def test_ctrl_c_on_a_supervisor_lets_every_child_finish_its_tasks(make_runtime, tmp_path):
    """A terminal's Ctrl-C is sent to the whole foreground group. Each child used to take it and
    the supervisor's forwarded SIGTERM as two signals ("stop at once") and leave its runs to the
    rescuer; now only the supervisor hears it, says so once, and the children finish."""
    rt = make_runtime(pinned=False)
    work = tmp_path / "work"
    work.mkdir()
    rt.client.batch_trigger([TriggerItem("test-block", {"dir": str(work)}) for _ in range(2)])
    log = tmp_path / "supervisor.log"
    supervisor = _supervisor_in_its_own_session(cli_env(rt.db.url), log)
    wait_until(lambda: len(started(work)) == 2, message="both children to start a task")
    os.killpg(supervisor.pid, signal.SIGINT)
    wait_until(lambda: "received SIGINT" in log.read_text(), message="the supervisor to say so")
    assert supervisor.poll() is None  # still waiting for the running tasks
    (work / "release").touch()
    assert supervisor.wait(30) == 0, log.read_text()
    assert rt.store.count_by_status() == {"completed": 2}
    text = log.read_text()
    assert text.count("received") == 1, text  # one line for all, no "again", no SIGTERM
    assert "received SIGINT: stopping 2 worker processes (each finishes its running tasks" in text


def test_children_of_a_killed_supervisor_finish_their_tasks_and_exit(make_runtime, tmp_path):
    """SIGKILL to the supervisor alone (an OOM kill, `kill -9`): the kernel sends each child
    SIGTERM, so none is left running unsupervised; each finishes its task and exits."""
    rt = make_runtime(pinned=False)
    work = tmp_path / "work"
    work.mkdir()
    rt.client.batch_trigger([TriggerItem("test-block", {"dir": str(work)}) for _ in range(2)])
    supervisor = _supervisor_in_its_own_session(cli_env(rt.db.url), tmp_path / "supervisor.log")
    wait_until(lambda: len(started(work)) == 2, message="both children to start a task")
    children = {int(p.name.split(".")[2]) for p in started(work)}
    supervisor.send_signal(signal.SIGKILL)
    assert supervisor.wait(10) == -signal.SIGKILL
    (work / "release").touch()

    def gone(pid):  # exited: no such process, or a zombie its new parent has not reaped yet
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rpartition(")")[2].split()[0] == "Z"
        except FileNotFoundError:
            return True

    wait_until(lambda: all(gone(pid) for pid in children), message="the children to exit")
    assert rt.store.count_by_status() == {"completed": 2}


def test_a_second_ctrl_c_stops_the_children_at_once_and_exits_1(make_runtime, tmp_path):
    """As a single worker does: the second signal stops at once, the runs are left to the
    rescuer, and the exit code (1) says so (it was 0)."""
    rt = make_runtime(pinned=False)
    work = tmp_path / "work"
    work.mkdir()
    rt.client.batch_trigger([TriggerItem("test-block", {"dir": str(work)}) for _ in range(2)])
    log = tmp_path / "supervisor.log"
    supervisor = _supervisor_in_its_own_session(cli_env(rt.db.url), log)
    wait_until(lambda: len(started(work)) == 2, message="both children to start a task")
    os.killpg(supervisor.pid, signal.SIGINT)
    wait_until(lambda: "received SIGINT:" in log.read_text(), message="the first signal")
    os.killpg(supervisor.pid, signal.SIGINT)
    assert supervisor.wait(30) == 1, log.read_text()
    assert "received SIGINT again: stopping the worker processes now" in log.read_text()
    assert rt.store.count_by_status() == {"executing": 2}  # the rescuer's, after their lease


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
