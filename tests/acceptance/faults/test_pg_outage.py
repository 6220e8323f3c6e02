"""PostgreSQL stopped mid-work (shorter and much longer than the lease): the worker keeps its
tasks running, keeps their outcomes, reconnects with back-off, logs once per change of state,
and settles everything when the server is back — no run lost, none done twice, the worker
never exits. Triggers meanwhile exit 4 with a clear message. A server of the test's own (the
session's shared one must not stop)."""

import os
import signal
import subprocess
import sys
import time

import pytest
from pgtmp import _as_postgres, bindir, pg_server

from flowjobs.core.client import TriggerItem
from flowjobs.runtime import Runtime
from flowjobs.store.db import Database
from flowjobs.store.migrate import upgrade
from tests.acceptance.faults import invariants
from tests.cli_helpers import cli_env, flowjobs, no_crash, start_worker, wait_until
from tests.conftest import make_settings

LEASE = 2  # seconds: the long outage outlasts it thirty times


class Server:
    """Stop and start the test's own PostgreSQL server with the options it was started with."""

    def __init__(self, url: str):
        import psycopg

        with psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        ) as conn:
            self.data = conn.execute("SHOW data_directory").fetchone()[0]
            port = conn.execute("SHOW port").fetchone()[0]
            sockets = conn.execute("SHOW unix_socket_directories").fetchone()[0]
        self.opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=200"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([f"{bindir()}/pg_ctl", "-D", self.data, *args]),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        self._ctl("-o", self.opts, "-l", self.data + "/../log", "-w", "-t", "30", "start")


@pytest.mark.parametrize(
    "outage", [5, 60], ids=["5s", "60s"]
)  # 60 s: thirty leases, the back-off at its cap
def test_worker_rides_out_a_postgresql_outage(outage, tmp_path):
    with pg_server() as url:
        upgrade(Database(url))
        server = Server(url)
        rt = Runtime(make_settings(url, tmp_path))
        work = tmp_path / "work"
        work.mkdir()
        runs = rt.client.batch_trigger(
            [TriggerItem("test-block", {"dir": str(work)}) for _ in range(4)]
        )
        env = cli_env(
            url, FLOWJOBS_WORKER_LEASE=f"{LEASE}s", FLOWJOBS_WORKER_RESCUE_INTERVAL="200ms"
        )
        log = tmp_path / "worker.log"
        worker = start_worker("--concurrency", "4", "--no-scheduler", env=env, stderr_path=log)
        try:
            wait_until(
                lambda: len(list(work.glob("*.started"))) == 4, message="four tasks to start"
            )
            rt.db.close()
            server.stop()

            refused = flowjobs("trigger", "noop", env=env)
            assert refused.returncode == 4, refused.stderr
            assert refused.stderr.startswith("error: ") and "unavailable" in refused.stderr
            assert no_crash(refused.stderr), refused.stderr

            (work / "release").touch()  # the tasks finish while the database is away
            wait_until(
                lambda: (
                    len((work / "completed.log").read_text().split()) == 4
                    if (work / "completed.log").exists()
                    else False
                ),
                message="the tasks to finish",
            )
            wait_until(
                lambda: "the database is unavailable" in log.read_text(),
                message="the outage to be noticed",
            )
            time.sleep(outage)  # the outage itself
            assert worker.poll() is None, log.read_text()

            server.start()
            back = time.monotonic()
            wait_until(
                lambda: rt.store.count_by_status() == {"completed": 4},
                timeout=60,
                message="the outcomes kept through the outage to be written",
            )
            recovered = time.monotonic() - back
            late = rt.trigger("test-block", {"dir": str(work)})  # claims resume
            wait_until(
                lambda: rt.store.run_status(late.id) == "completed",
                message="a new run to be claimed",
            )

            text = log.read_text()
            assert text.count("the database is unavailable") == 1, text  # once per change of state
            assert text.count("the database is back") == 1, text
            assert "Traceback" not in text
            for run in runs:
                assert [a["outcome"] for a in rt.store.attempts(run.id)] == ["succeeded"]
            assert len((work / "completed.log").read_text().split()) == 5  # each task ran once
            print(f"outage {outage}s: outcomes written {recovered:.2f}s after the server was back")

            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0, log.read_text()
            invariants.check(rt.db)
        finally:
            if worker.poll() is None:
                worker.kill()
            rt.close()


def test_trigger_wait_rides_out_an_outage_after_the_run_is_written(tmp_path):
    """`trigger --wait` whose database stops after the run is written says so — the run is
    written, a worker runs it once the database is back — and goes on waiting; it used to end
    with exit 4 and "nothing was written, try again", and a second trigger doubled the work."""
    with pg_server() as url:
        upgrade(Database(url))
        server = Server(url)
        work = tmp_path / "work"
        work.mkdir()
        (work / "release").touch()  # the task finishes as soon as a worker runs it
        env = cli_env(url)
        err = tmp_path / "trigger.err"
        with open(err, "w") as stderr:
            waiting = subprocess.Popen(
                [sys.executable, "-m", "flowjobs", "trigger", "test-block", "--wait"]
                + ["--payload", f'{{"dir": "{work}"}}'],
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        worker = None
        try:
            run_id = waiting.stdout.readline().strip()  # the id first, once it is written
            assert run_id.startswith("run_"), err.read_text()
            server.stop()
            wait_until(
                lambda: "the database stopped answering" in err.read_text(),
                message="--wait to notice the outage",
            )
            assert waiting.poll() is None, err.read_text()
            server.start()
            worker = start_worker("--burst", env=env, stderr_path=tmp_path / "worker.log")
            assert waiting.wait(60) == 0, err.read_text()
            text = err.read_text()
            assert f"run {run_id} is written" in text and "the database is back" in text, text
            assert "nothing was written" not in text and "Traceback" not in text, text
            rt = Runtime(make_settings(url, tmp_path))
            try:
                assert [r["id"] for r in rt.store.list_runs(limit=10)] == [run_id]
                assert rt.store.run_status(run_id) == "completed"
            finally:
                rt.close()
        finally:
            for proc in (waiting, worker):
                if proc is not None and proc.poll() is None:
                    proc.kill()


def test_the_dashboard_answers_503_while_postgresql_is_away_and_200_once_it_is_back(tmp_path):
    """`serve`'s dashboard reads the database on every page: with the server stopped it answers
    503 (as the webhook endpoints do), not a 500 with a traceback in the log; once the server is
    back, the first request is answered (the pool's connections the restart ended are dropped
    together, not lent out one by one to fail)."""
    import urllib.error
    import urllib.request

    from tests.cli_helpers import serving

    def get(url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=30) as reply:
                return reply.status
        except urllib.error.HTTPError as exc:
            return exc.code

    with pg_server() as url:
        upgrade(Database(url))
        server = Server(url)
        env = cli_env(url)
        log = tmp_path / "serve.log"
        with serving(env, log) as (proc, base):
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(6) as pool:  # requests at once: several pooled connections
                assert set(pool.map(get, [base + "/", base + "/runs"] * 6)) == {200}
            server.stop()
            assert get(base + "/") == 503
            server.start()
            assert [get(base + "/"), get(base + "/runs"), get(base + "/")] == [200, 200, 200]
            assert proc.poll() is None
        text = log.read_text()
        assert "database unavailable" in text
        assert no_crash(text), text


def test_a_worker_rides_out_a_server_that_takes_no_writes(tmp_path):
    """A failover behind a proxy or a DNS name: for a while the worker's connections reach a
    server that takes no writes (a standby, a demoted primary: `cannot execute UPDATE in a
    read-only transaction`). That is an outage to ride out, not a fault to exit on: the worker
    logs it, keeps its pool, and runs what is due once writes are taken again. It used to exit 4,
    and a supervisor then stopped every worker process."""
    import psycopg

    with pg_server() as url:
        upgrade(Database(url))
        rt = Runtime(make_settings(url, tmp_path))
        env = cli_env(url, FLOWJOBS_WORKER_POLL_INTERVAL="100ms")
        log = tmp_path / "worker.log"
        admin = psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        )
        worker = start_worker("--no-scheduler", env=env, stderr_path=log)
        try:
            first = rt.trigger("noop")
            wait_until(lambda: rt.store.run_status(first.id) == "completed", message="a first run")
            late = rt.trigger("noop", delay=2.0)  # due while the server takes no writes
            rt.db.close()

            def writes(allowed: bool) -> None:
                flag = (
                    "RESET default_transaction_read_only"
                    if allowed
                    else ("SET default_transaction_read_only = on")
                )
                admin.execute(f"ALTER DATABASE postgres {flag}")
                admin.execute(  # every session but this one: new ones take the setting
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = 'postgres' AND pid <> pg_backend_pid()"
                )
                rt.db.close()  # this test's reads, too: a pooled connection was just ended

            writes(False)
            wait_until(
                lambda: "takes no writes" in log.read_text(),
                timeout=30,
                message="the worker to notice",
            )
            assert worker.poll() is None, log.read_text()
            assert rt.store.run_status(late.id) == "delayed"  # due, not taken
            writes(True)
            wait_until(
                lambda: rt.store.run_status(late.id) == "completed",
                timeout=60,
                message="the due run to be taken once writes are",
            )
            assert worker.poll() is None, log.read_text()
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0, log.read_text()
            text = log.read_text()
            assert no_crash(text), text
        finally:
            if worker.poll() is None:
                worker.kill()
            admin.close()
            rt.close()


def test_a_supervisor_restarts_a_child_that_starts_while_the_database_is_away(tmp_path):
    """`run-worker --processes 2`: once its children have run, a child that dies and is
    restarted while PostgreSQL is away cannot start (exit 4). That is the outage, not a bad
    configuration: the supervisor restarts it with back-off until the database is back, and
    the other child rides the outage out. It used to stop every worker process, for good."""
    import re

    with pg_server() as url:
        upgrade(Database(url))
        server = Server(url)
        rt = Runtime(make_settings(url, tmp_path))
        env = cli_env(url)
        log = tmp_path / "supervisor.log"
        supervisor = start_worker("--processes", "2", "--no-scheduler", env=env, stderr_path=log)
        try:
            up = rt.trigger("noop", delay=6.0)  # done: both children have run for seconds
            wait_until(
                lambda: rt.store.run_status(up.id) == "completed", timeout=30, message="uptime"
            )
            rt.db.close()
            pids = [
                int(p)
                for p in re.findall(r"started worker process \d \(pid (\d+)\)", log.read_text())
            ]
            assert len(pids) == 2, log.read_text()
            server.stop()
            os.kill(pids[0], signal.SIGKILL)
            wait_until(
                lambda: "exited with 4" in log.read_text(), message="the restarted child to fail"
            )
            wait_until(
                lambda: log.read_text().count("restarting in") >= 2,
                message="the supervisor to restart it again",
            )
            assert supervisor.poll() is None, log.read_text()
            assert "stopping the others" not in log.read_text()
            server.start()
            late = rt.trigger("noop")
            wait_until(
                lambda: rt.store.run_status(late.id) == "completed",
                timeout=60,
                message="the workers to take runs again",
            )
            wait_until(
                lambda: len(re.findall(r"started worker process 0", log.read_text())) >= 3,
                timeout=60,
                message="the child to be running again",
            )
            supervisor.send_signal(signal.SIGTERM)
            assert supervisor.wait(60) == 0, log.read_text()
        finally:
            if supervisor.poll() is None:
                supervisor.kill()
            rt.close()
