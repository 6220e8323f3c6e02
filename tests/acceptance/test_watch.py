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


def test_a_pipe_gets_one_frame_as_tab_separated_tables(sqlite_url):
    """Piped (with or without --once): the queues, the runs by status and the newest runs, each
    a tab-separated table with its header, a blank line between — no box drawing."""
    env = cli_env(sqlite_url)
    first = flowjobs("trigger", "noop", env=env).stdout.strip()
    later = flowjobs("trigger", "noop", "--delay", "1h", env=env).stdout.strip()
    for once in ((), ("--once",)):
        result = flowjobs("runs", "watch", *once, "--columns", "id,status", env=env, timeout=30)
        assert result.returncode == 0, result.stderr
        queues, statuses, runs = (
            [line.split("\t") for line in block.splitlines()]
            for block in result.stdout.rstrip("\n").split("\n\n")
        )
        assert queues[0] == ["queue", "due_now", "executing", "oldest_wait_s"]
        assert [row[:3] for row in queues[1:]] == [["default", "1", "0"]]
        assert statuses == [["status", "runs"], ["delayed", "1"], ["queued", "1"]]
        assert runs == [["id", "status"], [later, "delayed"], [first, "queued"]]


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
