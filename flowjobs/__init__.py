"""flowjobs — a job runner for billing platforms: one command, one database file.

The public API is small and imported lazily so that `flowjobs --help` stays fast:

    from flowjobs import task, RetryPolicy, AbortTaskRunError

Tasks are declared with :func:`task`; runs are created with
:meth:`flowjobs.runtime.Runtime.trigger` (or ``ctx.trigger`` inside a task).
"""

__version__ = "0.1.0"

_LAZY = {
    "task": "flowjobs.core.registry",
    "RetryPolicy": "flowjobs.core.retry",
    "AbortTaskRunError": "flowjobs.errors",
    "TaskContext": "flowjobs.core.context",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)
