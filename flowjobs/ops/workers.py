"""Which workers are alive: each worker process keeps a row in `flowjobs_workers` fresh with a
heartbeat every few seconds (`core/worker.py`). A worker is `alive` while its heartbeat is
recent, `stopped` when it recorded a clean exit, and `lost` when its heartbeat stopped without
one (killed, crashed, cut off from the database, or the machine went away)."""

from __future__ import annotations

from flowjobs.core.worker import PRESENCE_INTERVAL

LIVE_WITHIN_MS = int(6 * PRESENCE_INTERVAL * 1000)  # a heartbeat this recent: alive


def state(row: dict, now: int) -> str:
    if row["stopped_at"] is not None:
        return "stopped"
    return "alive" if now - row["heartbeat_at"] <= LIVE_WITHIN_MS else "lost"


def report(store, now: int, since_ms: int) -> list[dict]:
    """Workers seen in the last `since_ms`, newest first, each with its `state`."""
    return [{**row, "state": state(row, now)} for row in store.workers(now - since_ms)]


def alive(store, now: int) -> list[dict]:
    return [w for w in report(store, now, LIVE_WITHIN_MS) if w["state"] == "alive"]
