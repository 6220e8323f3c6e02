"""Logs: JSON lines when not on a terminal (or --log-format json), each run's lines carrying
run id, task, attempt and worker; plain text with --log-format text."""

from __future__ import annotations

import json

from tests.cli_helpers import cli_env, flowjobs


def test_worker_logs_are_json_lines_with_run_fields(sqlite_url):
    env = cli_env(sqlite_url)
    run_id = flowjobs("trigger", "hello-world", "--payload", '{"n": 1}', env=env).stdout.strip()
    failing = flowjobs("trigger", "test-abort", env=env).stdout.strip()
    result = flowjobs("run-worker", "--burst", "--no-scheduler", env=env)
    assert result.returncode == 0
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    said = next(line for line in lines if line.get("run_id") == run_id)
    assert said["task"] == "hello-world" and said["attempt"] == 1 and said["worker"]
    assert "hello from run" in said["message"]
    failed = next(
        line for line in lines if line.get("run_id") == failing and line["level"] == "warning"
    )
    assert failed["task"] == "test-abort" and "failed" in failed["message"]

    text = flowjobs("--log-format", "text", "run-worker", "--burst", "--no-scheduler", env=env)
    assert text.returncode == 0 and " INFO flowjobs" in text.stderr
    bad = flowjobs("--log-format", "xml", "tasks", "list", env=env)
    assert bad.returncode == 2 and "--log-format" in bad.stderr


def test_one_start_up_line_each_and_an_access_log_line_per_request(sqlite_url, tmp_path):
    """run-worker and run-scheduler each log one start-up line naming version, database,
    queues / schedules and concurrency; serve writes one access-log line per request
    (method, path, status, bytes, time, client)."""
    import signal
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from flowjobs import __version__
    from tests.cli_helpers import wait_until

    env = cli_env(sqlite_url)
    path = sqlite_url.removeprefix("sqlite:///")
    worker = flowjobs(
        "--log-format",
        "text",
        "run-worker",
        "--burst",
        "--concurrency",
        "3",
        "-q",
        "mail",
        env=env,
    )
    assert worker.returncode == 0, worker.stderr
    [start] = [line for line in worker.stderr.splitlines() if " started on " in line]
    assert f"flowjobs {__version__} worker " in start and f"started on sqlite:///{path}" in start
    assert "concurrency 3, queues mail" in start

    logs = {}
    procs = {}
    for name in ("run-scheduler", "serve"):
        logs[name] = tmp_path / f"{name}.log"
        with open(logs[name], "w") as err:
            args = ["serve", "--port", "0"] if name == "serve" else [name]
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "flowjobs", "--log-format", "text", *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
    try:
        started = wait_until(
            lambda: [x for x in logs["run-scheduler"].read_text().splitlines() if "started" in x],
            message="the scheduler's start-up line",
        )
        assert len(started) == 1 and f"flowjobs {__version__} scheduler started on" in started[0]
        assert path in started[0] and "schedules, tick every" in started[0]
        listening = wait_until(
            lambda: next(
                (x for x in logs["serve"].read_text().splitlines() if "listening on" in x), None
            ),
            message="serve to listen",
        )
        base = listening.split()[-1]
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            assert response.status == 200
        try:
            urllib.request.urlopen(f"{base}/no-such-page", timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        lines = wait_until(
            lambda: (
                [x for x in logs["serve"].read_text().splitlines() if "flowjobs.access" in x]
                if "/no-such-page" in logs["serve"].read_text()
                else None
            ),
            message="the access log",
        )
        assert len(lines) == 2, lines
        assert " GET /healthz 200 " in lines[0] and "ms 127.0.0.1" in lines[0]
        assert " GET /no-such-page 404 " in lines[1]
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
