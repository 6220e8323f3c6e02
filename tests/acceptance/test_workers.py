"""Workers record themselves (`flowjobs_workers`): `flowjobs workers` lists a live worker with
its pid, queues and concurrency; a clean stop says `stopped`; a worker killed without a word
becomes `lost` once its heartbeat is old — on both backends, through the CLI."""

from __future__ import annotations

import json
import re
import signal
import time

from flowjobs.core.clock import iso
from tests.cli_helpers import cli_env, flowjobs, start_worker, wait_until


def workers_json(env, **extra) -> list[dict]:
    result = flowjobs("workers", "--json", env={**env, **extra})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def mine(rows, pid):
    return next((w for w in rows if w["pid"] == pid), None)


def test_a_live_worker_is_listed_then_stopped_or_lost(db_url, tmp_path):
    env = cli_env(db_url)
    calm = start_worker(
        "--concurrency", "3", "--queue", "default", env=env, stderr_path=tmp_path / "a.log"
    )
    killed = start_worker(env=env, stderr_path=tmp_path / "b.log")
    try:
        live = wait_until(
            lambda: (
                (rows := workers_json(env))
                and mine(rows, calm.pid)
                and mine(rows, killed.pid)
                and rows
            ),
            message="both workers to record themselves",
        )
        row = mine(live, calm.pid)
        assert row["state"] == "alive"
        assert (row["queues"], row["concurrency"], row["stopped_at"]) == ("default", 3, None)
        # times as every other command's JSON writes them (they were epoch milliseconds)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["started_at"])
        assert row["id"].split(":")[1] == str(calm.pid)
        table = flowjobs("workers", env=env)
        assert table.returncode == 0 and row["id"] in table.stdout and "alive" in table.stdout

        calm.send_signal(signal.SIGTERM)
        assert calm.wait(timeout=60) == 0
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        rows = workers_json(env)
        assert mine(rows, calm.pid)["state"] == "stopped"
        assert mine(rows, killed.pid)["state"] == "alive"  # its last heartbeat is still recent

        # a minute later (the CLI's clock moved on), the killed worker is lost, not alive
        later = iso(int(time.time() * 1000) + 60_000)
        rows = workers_json(env, FLOWJOBS_CLOCK=f"{later} x1 @{time.time()}")
        assert mine(rows, killed.pid)["state"] == "lost"
        assert mine(rows, calm.pid)["state"] == "stopped"
    finally:
        for proc in (calm, killed):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_no_worker_yet_says_how_to_start_one(sqlite_url):
    env = cli_env(sqlite_url)
    result = flowjobs("workers", env=env)
    assert result.returncode == 0
    assert "no worker has been seen" in result.stdout + result.stderr
    assert "flowjobs run-worker" in result.stdout + result.stderr
    assert workers_json(env) == []
