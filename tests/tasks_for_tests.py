"""Tasks used by the tests (registered through `[tasks] modules`, as a user's would be)."""

import os
import threading
import time
from pathlib import Path

from pydantic import BaseModel

from flowjobs.core.registry import task
from flowjobs.core.retry import RetryPolicy
from flowjobs.errors import AbortTaskRunError

FAST_RETRY = RetryPolicy(max_attempts=3, min_wait=1.0, max_wait=10.0, factor=2.0, randomize=False)


class Empty(BaseModel):
    pass


@task("test-fail-once", retry=FAST_RETRY)
def fail_once(payload, ctx):
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {"attempt": ctx.attempt}


@task(
    "test-always-fail", retry=RetryPolicy(max_attempts=2, min_wait=0, max_wait=0, randomize=False)
)
def always_fail(payload, ctx):
    raise ValueError("always")


@task("test-abort", retry=FAST_RETRY)
def abort(payload, ctx):
    raise AbortTaskRunError("customer not found")


@task("test-exit", retry=RetryPolicy(max_attempts=1))
def exits(payload, ctx):
    raise SystemExit(3)


@task("test-unserializable")
def unserializable(payload, ctx):
    return object()


class SleepPayload(BaseModel):
    seconds: float


@task("test-sleep", payload=SleepPayload, timeout="300ms", retry=RetryPolicy(max_attempts=1))
def sleep(payload, ctx):
    time.sleep(payload.seconds)
    return "slept"


class OverrunPayload(BaseModel):
    file: str
    seconds: float


@task(
    "test-overrun",
    payload=OverrunPayload,
    timeout="300ms",
    retry=RetryPolicy(max_attempts=2, min_wait=0, max_wait=0, randomize=False),
)
def overrun(payload, ctx):
    """Runs past its timeout without looking at ctx.canceled; notes when each attempt starts
    and ends."""
    with open(payload.file, "a") as f:
        f.write(f"start {ctx.attempt}\n")
    time.sleep(payload.seconds)
    with open(payload.file, "a") as f:
        f.write(f"end {ctx.attempt}\n")
    return "done"


class BlockPayload(BaseModel):
    dir: str


@task(
    "test-block",
    payload=BlockPayload,
    retry=RetryPolicy(max_attempts=5, min_wait=0, max_wait=0, randomize=False),
)
def block(payload, ctx):
    """Mark its start, wait until `<dir>/release` exists, then record its completion."""
    folder = Path(payload.dir)
    (folder / f"{ctx.run_id}.{ctx.attempt}.{os.getpid()}.started").touch()
    while not (folder / "release").exists():
        if ctx.canceled.wait(0.02):
            return None
    with open(folder / "completed.log", "a") as f:
        f.write(ctx.run_id + "\n")
    return "done"


_active = {"now": 0, "max": 0}
_active_lock = threading.Lock()


@task("test-limited", queue="limited", concurrency_limit=2)
def limited(payload, ctx):
    with _active_lock:
        _active["now"] += 1
        _active["max"] = max(_active["max"], _active["now"])
    time.sleep(0.05)
    with _active_lock:
        _active["now"] -= 1


class ChildPayload(BaseModel):
    fail_after_trigger: bool = False


@task("test-child", payload=ChildPayload, retry=RetryPolicy(max_attempts=1))
def child(payload, ctx):
    with ctx.transaction() as tx:
        tx.trigger("hello-world", {"from": ctx.run_id})
        if payload.fail_after_trigger:
            raise RuntimeError("rolled back")
    return "ok"


# -- crashes and failure hooks ---------------------------------------------------------------
from flowjobs.core.registry import FailedRun  # noqa: E402


@task("test-import-error", retry=RetryPolicy(max_attempts=1), on_failure="test-on-failure")
def import_error(payload, ctx):
    """A fault of the program, not of the task: it must not use up the run's one attempt."""
    from flowjobs_tests_no_such_module import anything  # noqa: F401


class HookedPayload(BaseModel):
    invoice: str = ""


@task(
    "test-fail-hooked",
    payload=HookedPayload,
    retry=RetryPolicy(max_attempts=1),
    on_failure="test-on-failure",
)
def fail_hooked(payload, ctx):
    raise ValueError("the card was declined")


@task("test-on-failure", payload=FailedRun)
def on_failure(payload, ctx):
    return {
        "of": payload.run_id,
        "task": payload.task,
        "payload": payload.payload,
        "error": payload.error,
    }


# -- fault suite (tests/acceptance/faults) --------------------------------------------------------------
class RecordPayload(BaseModel):
    dir: str
    seconds: float = 0.0


def _append_line(path: Path, line: str) -> None:
    """One O_APPEND write: lines from many processes (and a SIGKILL between two) never mix."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@task("test-record", payload=RecordPayload)
def record(payload, ctx):
    """A short healthy run (default retry policy) that records each execution in
    `<dir>/executions.log`: `start <run> <attempt> <pid>` and, once done, `end <run> <attempt> <pid>`."""
    log = Path(payload.dir) / "executions.log"
    _append_line(log, f"start {ctx.run_id} {ctx.attempt} {os.getpid()}\n")
    if payload.seconds:
        time.sleep(payload.seconds)
    _append_line(log, f"end {ctx.run_id} {ctx.attempt} {os.getpid()}\n")
    return {"attempt": ctx.attempt}


@task("test-nul-bytes", retry=RetryPolicy(max_attempts=1), on_failure="test-on-failure")
def nul_bytes(payload, ctx):
    ctx.log.info("a log line with a NUL \x00 byte")
    raise ValueError("a message with a NUL \x00 byte")


@task("test-poison", retry=RetryPolicy(max_attempts=1))
def poison(payload, ctx):
    raise RuntimeError("poison")


class LockedPayload(BaseModel):
    db: str  # an SQLite file the test may hold locked
    wrap: bool = False  # turn the driver's error into a task error of its own


@task("test-locked", payload=LockedPayload, retry=RetryPolicy(max_attempts=1))
def locked(payload, ctx):
    """Write to an SQLite file (its busy timeout 0.1 s): 'database is locked' while the test
    holds it. With `wrap`, a RuntimeError raised while handling that error (a task's own)."""
    import sqlite3

    conn = sqlite3.connect(payload.db, timeout=0.1, isolation_level=None)
    try:
        conn.execute("INSERT INTO t VALUES (1)")
    except sqlite3.OperationalError:
        if payload.wrap:
            raise RuntimeError("the ledger would not take the write") from None
        raise
    finally:
        conn.close()
    return {"attempt": ctx.attempt}


@task("test-log-in-transaction", retry=RetryPolicy(max_attempts=1))
def log_in_transaction(payload, ctx):
    """Logs inside its own transaction (it once waited for itself on SQLite until the busy
    timeout), then tries a trigger there that does not join it."""
    with ctx.transaction() as tx:
        ctx.log.info("inside the transaction")
        tx.trigger("noop")
    ctx.log.info("after it")
    try:
        with ctx.transaction():
            ctx.trigger("noop")
    except RuntimeError as exc:
        return {"refused": str(exc)}
    return {"refused": None}


@task("test-log-during-outage", payload=BlockPayload, retry=RetryPolicy(max_attempts=1))
def log_during_outage(payload, ctx):
    """Logs, waits for `<dir>/locked` (the test then holds the database), logs twice more and
    returns: those two lines meet a database that takes no writes."""
    folder = Path(payload.dir)
    ctx.log.info("before")
    (folder / "logged").touch()
    while not (folder / "locked").exists():
        time.sleep(0.01)
    ctx.log.info("during")
    ctx.log.info("after")
    (folder / "finished").touch()
    return "done"
