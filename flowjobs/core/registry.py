"""Task declarations and the registry that maps task ids to them.

    @task("attempt-billing-run", payload=AttemptBillingRunPayload, retry=RetryPolicy(max_attempts=3))
    def attempt_billing_run(payload, ctx): ...

`@task` only declares: it returns a `Task` and changes nothing else. A `Registry` (one per
runtime, never a module-level global) loads an explicit list of modules (built-in ones in
`flowjobs.tasks.BUILTIN_MODULES`, the user's in `[tasks] modules`) and takes the tasks each
module declares at its top level (and those it lists in `TASKS`, for tasks made in a loop) —
never by scanning packages.
"""

from __future__ import annotations

import importlib
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowjobs.core.retry import Policy
from flowjobs.durations import parse_duration
from flowjobs.errors import ConfigError, UnknownTask

TASK_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class AnyObject(BaseModel):
    """Payload model that accepts any JSON object."""

    model_config = ConfigDict(extra="allow")


class Empty(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FailedRun(BaseModel):
    """The payload of a failure hook (`@task(on_failure="hook-task-id")`): the run that failed
    for good, its task, its payload and its last error."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    run_id: str = Field(alias="runId")
    task: str
    payload: dict = {}
    error: str | None = None


@dataclass
class Task:
    id: str
    fn: Callable[[Any, Any], Any]
    payload: type[BaseModel]
    retry: Policy | None = None  # None: the [retry] defaults of flowjobs.toml
    queue: str = "default"
    concurrency_limit: int | None = None
    timeout: float | None = None  # seconds; None: [run] timeout
    cron: str | None = None
    timezone: str = "UTC"
    description: str = ""
    module: str = field(default="", repr=False)
    on_failure: str | None = None  # task triggered (payload FailedRun) when a run fails for good

    def __call__(self, payload, ctx):
        return self.fn(payload, ctx)


class Registry:
    def __init__(self, loader: Callable[[Registry, str], None] | None = None):
        self._tasks: dict[str, Task] = {}
        # Called with a task id that is not registered (yet): loads what declares it.
        self.loader = loader

    def add(self, task: Task) -> Task:
        existing = self._tasks.get(task.id)
        if existing is not None and existing.fn is not task.fn:
            raise ConfigError(
                [
                    f"tasks: task id {task.id!r} is declared twice "
                    f"({existing.module} and {task.module})"
                ]
            )
        self._tasks[task.id] = task
        return task

    def get(self, task_id: str) -> Task:
        task = self._tasks.get(task_id)
        if task is None and self.loader is not None:
            self.loader(self, task_id)  # load what declares it (everything, when that is unclear)
            task = self._tasks.get(task_id)
        if task is None:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise UnknownTask(f"unknown task {task_id!r} (known tasks: {known})")
        return task

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._tasks

    def all(self) -> list[Task]:
        return [self._tasks[k] for k in sorted(self._tasks)]

    def queue_limits(self) -> dict[str, int]:
        """Per-queue concurrency limits declared by tasks (the smallest wins)."""
        limits: dict[str, int] = {}
        for t in self._tasks.values():
            if t.concurrency_limit is not None:
                limits[t.queue] = min(limits.get(t.queue, t.concurrency_limit), t.concurrency_limit)
        return limits

    def load(self, names: list[str]) -> None:
        """Import task modules and register the tasks each declares at its top level; a module
        that fails to import is a configuration error."""
        problems = []
        for name in names:
            try:
                module = importlib.import_module(name)
            except ConfigError:
                raise
            except (Exception, SystemExit) as exc:  # sys.exit() or argparse at import time too
                problems.append(
                    f"tasks.modules: cannot import {name!r}: {_import_failure(exc, name)}"
                )
                continue
            for value in list(vars(module).values()):
                if isinstance(value, Task):
                    self.add(value)
            for value in getattr(module, "TASKS", ()):  # tasks a module generates in a loop
                self.add(value)
        if problems:
            raise ConfigError(problems)


def _import_failure(exc: BaseException, name: str) -> str:
    """What went wrong importing a task module, with the file and line where it was raised (an
    error in a module it imports named neither)."""
    what = (
        f"it called sys.exit({exc.code!r}) at import time"
        if isinstance(exc, SystemExit)
        else f"{type(exc).__name__}: {exc}"
    )
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if "importlib" not in f.filename and "<frozen" not in f.filename]
    if own and not isinstance(exc, SyntaxError):  # a SyntaxError names its file and line
        where = own[-1]
        what += f" (at {where.filename}:{where.lineno})"
    return what


def task(
    id: str,
    *,
    payload: type[BaseModel] = Empty,
    retry: Policy | None = None,
    queue: str | None = None,
    concurrency_limit: int | None = None,
    timeout: str | float | None = None,
    cron: str | None = None,
    timezone: str = "UTC",
    description: str | None = None,
    on_failure: str | None = None,
    into: Registry | None = None,
) -> Callable[[Callable[[Any, Any], Any]], Task]:
    """Declare a task. `timeout` is a duration ("30s") or seconds. `on_failure` names a task
    that is triggered, in the same transaction, when a run of this one fails for good (attempts
    or crash budget used up, aborted, timed out on its last attempt), with a `FailedRun`
    payload and the idempotency key `on-failure:<run id>`: the place to settle a business
    object (a billing run, a payment) that the failed run left half-way. The task is
    registered when its module is loaded by a `Registry` (or at once `into` a given one).

    `concurrency_limit` limits a queue (every task on it, in all workers): a task that sets it
    and names no `queue` gets a queue of its own, named after it (as Trigger.dev's tasks do).
    It used to land on `default` and hold every other task there to its limit."""
    if not TASK_ID.match(id):
        raise ValueError(f"task id {id!r} must be kebab-case, e.g. 'attempt-billing-run'")
    if concurrency_limit is not None and concurrency_limit < 1:
        raise ValueError("concurrency_limit must be at least 1")
    seconds = parse_duration(timeout) if isinstance(timeout, str) else timeout

    def decorate(fn):
        doc = description if description is not None else (fn.__doc__ or "").strip().split("\n")[0]
        t = Task(
            id=id,
            fn=fn,
            payload=payload,
            retry=retry,
            queue=queue or (id if concurrency_limit is not None else "default"),
            concurrency_limit=concurrency_limit,
            timeout=seconds,
            cron=cron,
            timezone=timezone,
            description=doc,
            module=fn.__module__,
            on_failure=on_failure,
        )
        if into is not None:
            into.add(t)
        return t

    return decorate
