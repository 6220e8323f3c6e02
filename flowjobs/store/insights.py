"""Read-only statements for the dashboard (`flowjobs serve`): what the job tables say about the
system as a whole — counts per status and queue, throughput by outcome, duration percentiles,
run search. Each is written once in SQL both SQLite and PostgreSQL read (`:name` parameters,
rewritten to `%(name)s` for psycopg); the functions take a JobStore. Status names come from
`flowjobs.store.states`, never spelled here by hand."""

from __future__ import annotations

from flowjobs.store.states import ORDER, TERMINAL, RunStatus, sql_list

_TERMINAL = sql_list(TERMINAL)
_WAITING = ("id", "task", "queue", "status", "run_at")  # JobStore.oldest_due, .upcoming

STATEMENTS = {
    # Runs per queue and status (every status, including finished ones).
    "queue_status_counts": """
        SELECT queue, status, count(*) FROM flowjobs_runs GROUP BY queue, status ORDER BY 1, 2""",
    # Finished runs per time bucket and final status since :since (bucket = :bucket ms).
    "throughput": f"""
        SELECT (finished_at - :since) / :bucket AS slot, status, count(*) FROM flowjobs_runs
        WHERE finished_at >= :since AND status IN {_TERMINAL}
        GROUP BY 1, 2""",
    # Attempt durations since :since: a completed run's last attempt lives in the run row,
    # every other attempt in flowjobs_attempts.
    "durations": f"""
        SELECT task, finished_at - attempt_started_at FROM flowjobs_runs
        WHERE status = '{RunStatus.COMPLETED}' AND finished_at >= :since
          AND attempt_started_at IS NOT NULL
        UNION ALL
        SELECT r.task, a.duration_ms FROM flowjobs_attempts a
        JOIN flowjobs_runs r ON r.id = a.run_id
        WHERE a.finished_at >= :since AND a.duration_ms IS NOT NULL
        LIMIT :limit""",
    # Runs whose payload names a value (a billing object's id), newest first.
    "runs_mentioning": """
        SELECT * FROM flowjobs_runs WHERE payload LIKE :pattern ESCAPE '!'
        ORDER BY created_at DESC, id DESC LIMIT :limit""",
}


def _sql(store, name: str) -> str:
    return store._prepare(STATEMENTS[name])


def _rows(store, sql: str, params: dict) -> list:
    with store.db.borrow() as conn:
        return conn.execute(sql, params).fetchall()


def status_counts(store) -> dict[str, int]:
    """Runs per status, every status present (zero when none), in ORDER."""
    found = store.count_by_status()
    return {status.value: int(found.get(status, 0)) for status in ORDER}


def queue_counts(store) -> dict[str, dict[str, int]]:
    """{queue: {status: runs}} with every status present."""
    out: dict[str, dict[str, int]] = {}
    for queue, status, count in _rows(store, _sql(store, "queue_status_counts"), {}):
        out.setdefault(queue, {s.value: 0 for s in ORDER})[status] = int(count)
    return out


def throughput(store, now: int, span_ms: int, bucket_ms: int) -> dict:
    """Finished runs per bucket by final status over the `span_ms` before `now`:
    {"start": ms, "bucket": ms, "slots": n, "series": {status: [count per slot]}}."""
    slots = max(span_ms // bucket_ms, 1)
    since = now + 1 - slots * bucket_ms  # the last slot ends at `now`, inclusive
    series = {s.value: [0] * slots for s in ORDER if s in TERMINAL}
    params = {"since": since, "bucket": bucket_ms}
    for slot, status, count in _rows(store, _sql(store, "throughput"), params):
        if status in series and 0 <= int(slot) < slots:
            series[status][int(slot)] += int(count)
    return {"start": since, "bucket": bucket_ms, "slots": slots, "series": series}


def _percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile of a sorted, non-empty list."""
    rank = max(int(-(-p * len(sorted_values) // 100)), 1)  # ceil(p/100 * n)
    return sorted_values[min(rank, len(sorted_values)) - 1]


def durations(store, since: int, limit: int = 50_000) -> list[dict]:
    """Per task: attempts finished since `since`, p50 and p95 duration in ms (nearest rank)."""
    by_task: dict[str, list[int]] = {}
    params = {"since": since, "limit": limit}
    for task, ms in _rows(store, _sql(store, "durations"), params):
        if ms is not None:
            by_task.setdefault(task, []).append(max(int(ms), 0))
    out = []
    for task in sorted(by_task):
        values = sorted(by_task[task])
        out.append(
            {
                "task": task,
                "attempts": len(values),
                "p50": _percentile(values, 50),
                "p95": _percentile(values, 95),
            }
        )
    return out


def oldest_waiting(store, now: int) -> dict | None:
    """The run that has been due longest and is still waiting for a worker, with `waited_ms`."""
    row = store.oldest_due(now)
    if row is None:
        return None
    run = dict(zip(_WAITING, row))
    return {**run, "waited_ms": now - run["run_at"]}


def upcoming(store, now: int, limit: int = 20) -> list[dict]:
    """Runs waiting for a future `run_at` (delayed, or retrying after a back-off)."""
    return [dict(zip(_WAITING, row)) for row in store.upcoming(now, limit)]


def search_runs(
    store,
    *,
    text: str | None = None,
    status: str | None = None,
    task: str | None = None,
    since: int | None = None,
    until: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict]:
    """Runs newest first. `text` matches a run id, an idempotency key (as given or as stored
    with its scope) or a parent id exactly; `since`/`until` bound created_at (epoch ms)."""
    where: list[str] = []
    params: dict[str, object] = {"limit": limit, "offset": offset}
    if text:
        where.append("(id = :text OR idempotency_key = :text OR dedup_key = :text)")
        params["text"] = text
    if status is not None:
        where.append("status = :status")
        params["status"] = RunStatus(status).value
    if task is not None:
        where.append("task = :task")
        params["task"] = task
    if since is not None:
        where.append("created_at >= :since")
        params["since"] = since
    if until is not None:
        where.append("created_at < :until")
        params["until"] = until
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    return store._dicts(
        f"SELECT * FROM flowjobs_runs {clause} ORDER BY created_at DESC, id DESC "
        "LIMIT :limit OFFSET :offset",
        params,
    )


def tasks_seen(store) -> list[str]:
    """Every task name that has runs (for the filter's choices)."""
    return sorted({task for task, _status, _n in store.count_by_task_status()})


def runs_mentioning(store, value: str, limit: int = 50) -> list[dict]:
    """Runs whose payload contains `value` as a JSON string (a billing object's id)."""
    escaped = value.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return store._dicts(
        STATEMENTS["runs_mentioning"], {"pattern": f'%"{escaped}"%', "limit": limit}
    )
