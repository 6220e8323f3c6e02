"""Runs as the CLI shows them: JSON-ready dicts with ISO times and parsed payloads."""

from __future__ import annotations

import json

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


def run_detail(row: dict, attempts: list[dict], logs: list[dict], children: list[dict]) -> dict:
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
    return detail
