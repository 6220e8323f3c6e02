"""Long operations show a rich progress bar on a terminal (and nothing extra in a pipe):
schedules backfill and bulk replay here; `demo seed` and `make bench` use the same helper."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

from tests.cli_helpers import as_json, cli_env, flowjobs

CONFIG = '[schedules.minutely]\ntask = "hello-world"\ncron = "* * * * *"\n'


def on_terminal(args, env) -> tuple[int, bytes]:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowjobs", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**env, "COLUMNS": "120", "TERM": "xterm"},
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(30), seen


def test_backfill_and_bulk_replay_show_progress_on_a_terminal(sqlite_url, tmp_path):
    config = tmp_path / "flowjobs.toml"
    config.write_text(CONFIG)
    env = cli_env(sqlite_url, FLOWJOBS_CONFIG=str(config))
    code, seen = on_terminal(
        [
            "schedules",
            "backfill",
            "minutely",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-01-02T00:00:00Z",
        ],
        env,
    )
    assert code == 0 and b"backfilling minutely" in seen and "━".encode() in seen
    assert b"1440 slots, enqueued 1440" in seen

    piped = flowjobs(
        "runs",
        "replay",
        "--status",
        "queued",
        "--task",
        "hello-world",
        "--limit",
        "600",
        "--force",  # runs not ended: replayed only when asked for
        env=env,
    )
    assert piped.returncode == 0 and len(piped.stdout.split()) == 600
    assert "━" not in piped.stderr and "replayed 600 runs" in piped.stderr
    code, seen = on_terminal(
        ["runs", "replay", "-s", "queued", "-t", "hello-world", "--limit", "300", "--force"], env
    )
    assert code == 0 and b"replaying" in seen and "━".encode() in seen


def test_bulk_replay_selects_and_links(sqlite_url):
    env = cli_env(sqlite_url)
    ids = [flowjobs("trigger", "test-abort", env=env).stdout.strip() for _ in range(2)]
    assert flowjobs("run-worker", "--burst", "--no-scheduler", env=env).returncode == 0
    replayed = as_json(flowjobs("runs", "replay", "--status", "failed", "--json", env=env))
    assert sorted(r["replay_of"] for r in replayed) == sorted(ids)
    both = flowjobs("runs", "replay", *ids, env=env)
    assert both.returncode == 0 and len(both.stdout.split()) == 2
    mixed = flowjobs("runs", "replay", ids[0], "--status", "failed", env=env)
    assert mixed.returncode == 2 and "not both" in mixed.stderr
    assert flowjobs("runs", "replay", env=env).returncode == 2
    assert (
        json.loads(flowjobs("runs", "replay", ids[0], "--json", env=env).stdout)["replay_of"]
        == ids[0]
    )
