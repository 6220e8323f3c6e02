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
