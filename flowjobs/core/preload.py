"""What a worker imports before its task threads start.

Task modules import heavy packages inside their functions, so that `flowjobs trigger` does not
pay for them. In a worker that would happen on the task threads, several at once, and two
threads importing one package at the same moment can meet its import cycle half-way: "cannot
import name … from partially initialized module …" (sqlalchemy's engine, for one). So before a
worker first runs a task, it imports, one task at a time (`Preloader`), every module named by
an import statement anywhere in the task's module and, following modules of the same top-level
package the same way, in what those import. A worker pays only for the tasks it runs (`noop`
imports nothing heavy; a billing run imports stripe once).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import logging
import sys
import threading

log = logging.getLogger("flowjobs.worker")


def imported_names(module) -> list[str]:
    """Modules an import statement of `module` names, at any depth of its code."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return []
    for _ in range(3):
        try:
            tree = ast.parse(source)
            break
        except SystemError:  # CPython 3.11's parser is not thread-safe: another thread compiling
            continue  # at the same moment (a template, a test) can trip it; parse again
        except (SyntaxError, ValueError, RecursionError):
            return []
    else:
        return []
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                importlib.util.resolve_name(
                    "." * node.level + (node.module or ""), module.__package__ or ""
                )
                if node.level
                else node.module
            )
            if base:
                names.append(base)
                names += [f"{base}.{alias.name}" for alias in node.names]  # submodules, if they are
    return names


def preload(task_modules: list[str]) -> list[str]:
    """Import what the task modules import (following modules of their own top-level packages);
    returns the modules imported. A name that is not a module is skipped."""
    packages = {name.split(".")[0] for name in task_modules}
    todo, seen, loaded = list(task_modules), set(), []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        module = sys.modules.get(name) or _import(name)
        if module is None:
            continue
        loaded.append(name)
        if name.split(".")[0] in packages:
            todo += imported_names(module)
    return loaded


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None  # `from package import name` where name is not a module
    except Exception as exc:  # a module that fails to import fails its tasks' runs, not the worker
        log.warning("preloading %s failed: %s: %s", name, type(exc).__name__, exc)
        return None


_LOCK = threading.Lock()  # one per process: workers of one process (tests) share it
_DONE: set[str] = set()


class Preloader:
    """`ensure(module)` preloads a task module's imports once per process, one at a time."""

    def __init__(self):
        self._lock = _LOCK
        self._done = _DONE

    def ensure(self, module: str) -> None:
        if not module or module in self._done:
            return
        with self._lock:
            if module not in self._done:
                preload([module])
                self._done.add(module)
