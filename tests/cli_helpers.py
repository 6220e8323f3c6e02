"""Running `flowjobs` as a user would: a subprocess with its own environment."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


#: What only a crash prints: a traceback, or the CLI's "error: unexpected …, report it" line and
#: the server's "unexpected error handling …". A driver's own words are no crash:
#: libpq says "server closed the connection unexpectedly" when PostgreSQL goes away.
CRASH_SIGNS = ("Traceback", "error: unexpected ", "unexpected error", "and report it")


def no_crash(text: str) -> bool:
    """Whether a command's stderr or a process's log shows no crash (see `CRASH_SIGNS`)."""
    return not any(sign in text for sign in CRASH_SIGNS)


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


@contextmanager
def serving(env: dict, log: Path, *args: str):
    """`flowjobs [args] serve --port 0` in a subprocess (stderr to `log`): yields the process
    and its base URL once it listens; stopped by SIGTERM on the way out (killed if it does not
    stop within 15 s), so the caller can check `returncode` afterwards."""
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowjobs", *args, "serve", "--port", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        yield proc, listening_url(log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def listening_url(log: Path, timeout: float = 30) -> str:
    """The URL `flowjobs serve` logged it listens on (its log as text or JSON lines)."""
    line = wait_until(
        lambda: next((x for x in log.read_text().splitlines() if "listening on" in x), None),
        timeout=timeout,
        message="flowjobs serve to listen",
    )
    return json.loads(line)["url"] if line.startswith("{") else line.split()[-1]


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
