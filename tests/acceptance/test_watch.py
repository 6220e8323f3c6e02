"""`flowjobs runs watch`: one frame for a pipe, a live redrawn view on a terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

from tests.cli_helpers import cli_env, flowjobs


def test_once_prints_queues_and_runs(sqlite_url):
    env = cli_env(sqlite_url)
    first = flowjobs("trigger", "noop", env=env).stdout.strip()
    flowjobs("trigger", "noop", "--delay", "1h", env=env)
    result = flowjobs("runs", "watch", "--once", env=env)
    assert result.returncode == 0
    assert "queues" in result.stdout and "default" in result.stdout
    assert first in result.stdout and "queued 1" in result.stdout and "delayed 1" in result.stdout


def test_on_a_terminal_it_redraws_until_interrupted(sqlite_url):
    env = {**cli_env(sqlite_url), "COLUMNS": "160", "LINES": "40", "TERM": "xterm"}
    run_id = flowjobs("trigger", "noop", env=env).stdout.strip()
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowjobs", "runs", "watch", "--interval", "0.2"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while (
            seen.count(run_id.encode()) < 3 and time.monotonic() < deadline
        ):  # drawn, then redrawn
            ready, _, _ = select.select([leader], [], [], 1)
            if ready:
                seen += os.read(leader, 65536)
        assert seen.count(run_id.encode()) >= 3, seen[-500:]
        assert b"\x1b[" in seen  # cursor movement: redrawn in place
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
