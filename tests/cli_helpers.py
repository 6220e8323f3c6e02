"""Running `flowjobs` as a user would: a subprocess with its own environment."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli_env(db_url: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWJOBS_")}
    scratch = Path(tempfile.gettempdir()) / f"flowjobs-cli-tests-{os.getpid()}"
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "FLOWJOBS_DATABASE_URL": db_url,
            "FLOWJOBS_TASKS_MODULES": "tests.tasks_for_tests",
            # PDFs and emails of commands run by tests go to a scratch folder, not the repo
            "FLOWJOBS_DOCUMENTS_DIR": str(scratch / "documents"),
            "FLOWJOBS_MAIL_DIR": str(scratch / "mail"),
        }
    )
    env.update(extra)
    return env


def flowjobs(*args: str, env: dict, cwd=None, timeout: float = 60, input: str | None = None):
    return subprocess.run(
        [sys.executable, "-m", "flowjobs", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def start_worker(*args: str, env: dict, stderr_path: Path) -> subprocess.Popen:
    with open(stderr_path, "w") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "flowjobs", "run-worker", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def wait_until(predicate, timeout: float = 30, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {message}")


def as_json(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
