"""One attempt of one run: resolve the payload, perform the task, normalise what happened
into a closed set of outcomes, and decide the run's next state.

Only this module maps exceptions to outcomes:
  succeeded — the task returned a JSON-serialisable value
  failed    — the task raised; retried while attempts remain
  aborted   — AbortTaskRunError, a payload that no longer validates, or an unserialisable
              result: retrying cannot help, so the run fails at once
  timed_out — the attempt passed its timeout (decided by the worker's monitor); retried
  canceled  — someone canceled the run while it executed
  crashed   — a fault of the program or of its surroundings, not of the task: an ImportError
              (a module that failed to import, e.g. a third-party package's import cycle met by
              two threads at once), or a database outage met inside the task (the server went
              away, a locked SQLite file, a full disk, a failover: `ctx.log`, `ctx.trigger` or a
              unit of work during a restart). Like a worker that died (the rescuer's
              `crashed`), it counts against the run's crash budget (`[run] max_crashes`, with
              back-off), never against its attempts: a short outage cannot fail a run.
"""

from __future__ import annotations

import json
import time
import traceback as tb
from dataclasses import dataclass

from flowjobs.core.retry import Policy
from flowjobs.errors import AbortTaskRunError
from flowjobs.store.failures import raised_by_outage
from flowjobs.store.states import AttemptOutcome as A
from flowjobs.store.states import RunStatus as S

MAX_TRACEBACK = 20_000


@dataclass
class Outcome:
    kind: A
    result: str | None = None
    error: str | None = None
    traceback: str | None = None
    logs: tuple | list = ()  # lines the task logged that the database could not take then
    unregistered: bool = False  # crashed because this worker lacks the task (a deploy's skew)


@dataclass
class Decision:
    status: S  # the run's next status
    attempt_outcome: A  # what the attempt row records
    retry_at: int | None = None
    crashed: bool = False  # counts against the crash budget, not the attempts


def perform(task, payload_json: str, ctx) -> Outcome:
    outcome = _perform(task, payload_json, ctx)
    outcome.logs = _unwritten_logs(ctx)
    return outcome


def _perform(task, payload_json: str, ctx) -> Outcome:
    try:
        # model_validate without its Python wrapper (as the client validates: client.py)
        payload = task.payload.__pydantic_validator__.validate_python(json.loads(payload_json))
    except Exception as exc:
        return Outcome(A.ABORTED, error=f"payload is not valid for {task.id!r}: {exc}")
    try:
        try:
            value = task(payload, ctx)
        finally:
            _flush_logs(ctx)
    except AbortTaskRunError as exc:
        return Outcome(A.ABORTED, error=_describe(exc), traceback=_traceback())
    except ImportError as exc:
        return Outcome(A.CRASHED, error=_describe(exc), traceback=_traceback())
    except BaseException as exc:  # SystemExit, KeyboardInterrupt too: a task cannot stop the worker
        if isinstance(exc, Exception) and raised_by_outage(exc):
            return Outcome(A.CRASHED, error=_describe(exc), traceback=_traceback())
        return Outcome(A.FAILED, error=_describe(exc), traceback=_traceback())
    try:
        return Outcome(A.SUCCEEDED, result=None if value is None else json.dumps(value))
    except (TypeError, ValueError) as exc:
        return Outcome(A.ABORTED, error=f"the task's return value is not JSON-serialisable: {exc}")


def decide(
    outcome: Outcome,
    attempts_used: int,
    max_attempts: int,
    policy: Policy,
    now: int,
    crashes: int = 0,
    max_crashes: int = 10,
) -> Decision:
    """The run's next state. `attempts_used` counts this attempt and excludes crashes."""
    if outcome.kind == A.SUCCEEDED:
        return Decision(S.COMPLETED, A.SUCCEEDED)
    if outcome.kind == A.CANCELED:
        return Decision(S.CANCELED, A.CANCELED)
    if outcome.kind == A.CRASHED:
        if crashes + 1 >= max_crashes:
            return Decision(S.FAILED, A.CRASHED, crashed=True)
        delay = unregistered_delay_ms(crashes) if outcome.unregistered else crash_delay_ms(crashes)
        return Decision(S.RETRYING, A.CRASHED, now + delay, crashed=True)
    recorded = A.TIMED_OUT if outcome.kind == A.TIMED_OUT else A.FAILED
    if outcome.kind == A.ABORTED or attempts_used >= max_attempts:
        return Decision(S.FAILED, recorded)
    return Decision(S.RETRYING, recorded, now + int(policy.delay_after(attempts_used) * 1000))


def _flush_logs(ctx) -> None:
    """The log lines a task wrote inside its own SQLite transaction and left unwritten (it
    raised out of the block, or left a unit of work), or wrote while the database was away:
    written as its attempt ends. Those that still cannot be go with the outcome."""
    flush = getattr(ctx, "flush_logs", None)
    if flush is None or time.monotonic() < getattr(ctx, "_logs_paused_until", 0.0):
        return  # none, or the database refused one a moment ago: they go with the outcome
    try:
        flush()
    except Exception:  # the database is away: the worker writes them after the outcome
        pass


def _unwritten_logs(ctx) -> tuple | list:
    lines = getattr(ctx, "_deferred_logs", None)
    return list(lines) if lines else ()


def unregistered_delay_ms(crashes: int) -> int:
    """A worker without the run's task (its module not deployed there yet): 1 min, doubling to
    an hour, so the default crash budget (10) waits about 4 hours for a worker that has it. At
    crash speed it lasted 4 minutes: a web app deployed before its workers lost its runs."""
    return min(60_000 << crashes, 3_600_000)


def crash_delay_ms(crashes: int) -> int:
    """After a fault of the program: 1 s, doubling to a minute (a module may import next time)."""
    return min(1000 << crashes, 60_000)


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # an exception whose message cannot be made
        text = repr(type(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _traceback() -> str:
    return tb.format_exc()[-MAX_TRACEBACK:]
