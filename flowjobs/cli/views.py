"""Runs as the CLI shows them: JSON-ready dicts with ISO times and parsed payloads."""

from __future__ import annotations

import json
from collections.abc import Sequence

from flowjobs.core.clock import iso

_TIMES = (
    "run_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "idempotency_expires_at",
    "attempt_started_at",
)


def _parse(text):
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


RUN_COLUMNS = (
    "id",
    "task",
    "status",
    "attempts",
    "queue",
    "created_at",
    "started_at",
    "finished_at",
    "error",
)
DEFAULT_RUN_COLUMNS = ("id", "task", "status", "attempts", "created_at", "finished_at", "error")
WATCH_COLUMNS = ("id", "task", "status", "attempts", "created_at", "error")  # runs watch
ERROR_WIDTH = 60  # an error is cut to this in a table row (`--wide`: whole; `runs show`: whole)


def run_columns(spec: str | None, default=DEFAULT_RUN_COLUMNS) -> list[str]:
    """`--columns id,task,error`: the run table's columns in that order (BadInput, exit 2,
    listing the valid names, for an unknown one); `default` when not given."""
    from flowjobs.cli.filters import one_of

    if spec is None:
        return list(default)
    chosen = [c.strip() for c in spec.split(",") if c.strip()]
    if not chosen:
        from flowjobs.errors import BadInput

        raise BadInput(f"--columns needs at least one of: {', '.join(RUN_COLUMNS)}")
    for column in chosen:
        one_of(column, RUN_COLUMNS, "--columns")
    return chosen


def run_cells(r: dict, columns: list[str], wide: bool = False) -> list:
    """A run summary's values for `columns`; the error cut to ERROR_WIDTH (and marked `…`)
    unless `wide`."""
    return [_cut(r["error"] or "", wide) if c == "error" else r[c] for c in columns]


def _cut(text: str, whole: bool) -> str:
    return text if whole or len(text) <= ERROR_WIDTH else text[: ERROR_WIDTH - 1] + "…"


def run_summary(row: dict) -> dict:
    return {
        "id": row["id"],
        "task": row["task"],
        "status": row["status"],
        "attempts": row["attempt"],
        "queue": row["queue"],
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "error": row["error"],
    }


def run_detail(
    row: dict,
    attempts: list[dict],
    logs: list[dict],
    children: list[dict],
    replays: Sequence[str],
) -> dict:
    detail = {
        k: (iso(v) if k in _TIMES else v)
        for k, v in row.items()
        if k not in ("dedup_key", "payload_hash", "cancel_requested")
    }
    detail["payload"] = _parse(row["payload"])
    detail["result"] = _parse(row["result"])
    detail["attempts"] = [
        {**a, "started_at": iso(a["started_at"]), "finished_at": iso(a["finished_at"])}
        for a in attempts
    ]
    detail["logs"] = [{**line, "at": iso(line["at"])} for line in logs]
    detail["children"] = [c["id"] for c in children]
    detail["replays"] = list(replays)
    return detail
