"""Process logs: readable text on a terminal, JSON lines otherwise (or with --log-format).

Lines about a run carry `run_id`, `task`, `attempt` and `worker` (as fields in JSON, as a
`[task run#attempt]` prefix in text), so a log pipeline can follow one run across workers.
The `serve` access log's lines carry `method`, `path`, `status`, `bytes`, `duration_ms` and
`remote` as fields in JSON, and its "listening on" line the `url`.
"""

from __future__ import annotations

import json
import logging
import sys
import time

RUN_FIELDS = ("run_id", "task", "attempt", "worker")
HTTP_FIELDS = ("method", "path", "status", "bytes", "duration_ms", "remote", "url")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in RUN_FIELDS + HTTP_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


_formatter: logging.Formatter | None = None  # the process's, once `configure` ran


def configure(level: int, fmt: str = "auto") -> None:
    """`fmt`: text, json, or auto (text when stderr is a terminal)."""
    global _formatter
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    _formatter = (
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.setFormatter(_formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def signal_line(logger: str, message: str) -> bytes:
    """A warning line for a signal handler to `os.write` to stderr, in the process's log format
    (a JSON line under `--log-format json`: it was plain text amid the JSON lines). Logging
    itself is not called there: the code the signal interrupted may hold its handler's lock."""
    record = logging.makeLogRecord(
        {"name": logger, "levelno": logging.WARNING, "levelname": "WARNING", "msg": message}
    )
    return ((_formatter or logging.Formatter("%(message)s")).format(record) + "\n").encode()


def run_fields(run_id: str, task: str, attempt: int, worker: str) -> dict:
    return {"run_id": run_id, "task": task, "attempt": attempt, "worker": worker}
