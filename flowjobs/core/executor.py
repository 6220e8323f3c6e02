"""One attempt of one run: resolve the payload, perform the task, normalise what happened
into a closed set of outcomes, and decide the run's next state.

Only this module maps exceptions to outcomes:
  succeeded — the task returned a JSON-serialisable value
  failed    — the task raised; retried while attempts remain
  aborted   — AbortTaskRunError, a payload that no longer validates, or an unserialisable
              result: retrying cannot help, so the run fails at once
  timed_out — the attempt passed its timeout (decided by the worker's monitor); retried
  canceled  — someone canceled the run while it executed
"""

from __future__ import annotations

import json
import traceback as tb
from dataclasses import dataclass

from flowjobs.core.retry import RetryPolicy
from flowjobs.errors import AbortTaskRunError

MAX_TRACEBACK = 20_000


@dataclass
class Outcome:
    kind: str
    result: str | None = None
    error: str | None = None
    traceback: str | None = None


@dataclass
class Decision:
    status: str  # the run's next status
    attempt_outcome: str  # what the attempt row records
    retry_at: int | None = None


def perform(task, payload_json: str, ctx) -> Outcome:
    try:
        payload = task.payload.model_validate(json.loads(payload_json))
    except Exception as exc:
        return Outcome("aborted", error=f"payload is not valid for {task.id!r}: {exc}")
    try:
        value = task(payload, ctx)
    except AbortTaskRunError as exc:
        return Outcome("aborted", error=_describe(exc), traceback=_traceback())
    except BaseException as exc:  # SystemExit, KeyboardInterrupt too: a task cannot stop the worker
        return Outcome("failed", error=_describe(exc), traceback=_traceback())
    try:
        return Outcome("succeeded", result=None if value is None else json.dumps(value))
    except (TypeError, ValueError) as exc:
        return Outcome("aborted", error=f"the task's return value is not JSON-serialisable: {exc}")


def decide(outcome: Outcome, attempt: int, max_attempts: int, policy: RetryPolicy, now: int) -> Decision:
    if outcome.kind == "succeeded":
        return Decision("completed", "succeeded")
    if outcome.kind == "canceled":
        return Decision("canceled", "canceled")
    recorded = "timed_out" if outcome.kind == "timed_out" else "failed"
    if outcome.kind == "aborted" or attempt >= max_attempts:
        return Decision("failed", recorded)
    return Decision("retrying", recorded, now + int(policy.delay_after(attempt) * 1000))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _traceback() -> str:
    return tb.format_exc()[-MAX_TRACEBACK:]
