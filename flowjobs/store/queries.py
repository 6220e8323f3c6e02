"""Every concurrency-critical statement on the job tables, named, one per dialect.

Parameters are written `:name`; for psycopg they are rewritten to `%(name)s` once at import.
A list parameter (`:queues`, `:skip_queues`) is a JSON array on SQLite (read with json_each)
and a native array on PostgreSQL. `:all_queues` is 1 when the worker takes every queue.

State changes are single conditional UPDATEs: claim bumps `lease_epoch`, and heartbeat,
finish and rescue all require the epoch (or an expired lease), so a worker that lost its
lease can never overwrite a newer attempt.
"""

import re
from functools import lru_cache

from flowjobs.store import states

# Spelled exactly as in the partial index flowjobs_runs_waiting (migration 0001, renamed by 0013;
# an OR chain on SQLite, see `spelled`): SQLite uses a partial index only when the query's terms
# match its WHERE clause as written.
PENDING = "('queued', 'delayed', 'retrying')"
assert states.sql_list(states.PENDING, order=("queued", "delayed", "retrying")) == PENDING
TERMINAL = states.sql_list(states.TERMINAL)
UNSUCCESSFUL = states.sql_list(states.UNSUCCESSFUL)


# SQLite runs an IN list of three or more constants through a temporary B-tree that it builds
# anew in every statement that evaluates it (OP_OpenEphemeral: its own page cache, ~90 KB
# allocated and freed). The partial claim and finished indexes are conditioned on such lists,
# so every insert, claim and finish paid for several — up to 7 in one statement — and the
# allocator, handing that memory back to the OS and faulting it in again, made a turn 2-4x
# slower depending on the heap's history. On SQLite both sets are therefore spelled as OR
# chains, in the two indexes (revision 0013) and in every statement that must match them
# (`spelled`). PostgreSQL keeps the IN lists.
def _or_chain(in_list: str) -> str:
    """`('a', 'b', 'c')` as `(status = 'a' OR status = 'b' OR status = 'c')`."""
    return "(" + " OR ".join(f"status = {value}" for value in in_list.strip("()").split(", ")) + ")"


_SPELLED_FOR_SQLITE = {f"status IN {values}": _or_chain(values) for values in (PENDING, TERMINAL)}
_SPELLING = re.compile("|".join(r"(?<![\w.])" + re.escape(term) for term in _SPELLED_FOR_SQLITE))


@lru_cache(maxsize=1024)
def spelled(dialect: str, sql: str) -> str:
    """`sql` as `dialect` runs it: on SQLite the waiting and finished sets as OR chains (see
    above; a column qualified by a table alias keeps its IN list), on PostgreSQL unchanged."""
    if dialect != "sqlite":
        return sql
    return _SPELLING.sub(lambda m: _SPELLED_FOR_SQLITE[m.group(0)], sql)


RUN_COLUMNS = (
    "id, task, queue, status, payload, priority, attempt, max_attempts, run_at, created_at, "
    "updated_at, idempotency_key, dedup_key, idempotency_expires_at, payload_hash, parent_id, replay_of"
)

# Expired lease -> canceled (cancel requested), failed (crash budget used up) or retrying.
# A crash does not use up an attempt: it counts against :max_crashes instead (`crashes`), so a
# dying worker cannot fail a healthy run, while a run that kills its worker every time stops.
_RESCUE = """
        UPDATE flowjobs_runs SET
            status = CASE WHEN cancel_requested = 1 THEN 'canceled'
                          WHEN crashes + 1 >= :max_crashes THEN 'failed' ELSE 'retrying' END,
            finished_at = CASE WHEN cancel_requested = 1 OR crashes + 1 >= :max_crashes THEN :now END,
            dedup_key = CASE WHEN cancel_requested = 1 OR crashes + 1 >= :max_crashes THEN NULL
                             ELSE dedup_key END,
            crashes = crashes + 1,
            error = 'worker lost its lease (crashed or stalled)',
            run_at = :now, lease_expires_at = NULL, updated_at = :now
"""
_RESCUED = "id, task, payload, attempt, worker, attempt_started_at, status"

_CLAIMED = (
    "id, task, queue, payload, attempt, max_attempts, lease_epoch, created_at, run_at, crashes"
)

# Every priority some run waits at, lowest first, as the recursive table `waiting(priority)`
# (ending in one NULL row): the claim index (priority, run_at, id) read as a skip-scan, one seek
# per distinct priority however many runs wait. Together with `_SOONEST` it answers "when is the
# next run due" without an index on run_at alone (revision 0012), which every trigger and every
# claim would have to write.
WAITING_PRIORITIES = f"""
        WITH RECURSIVE waiting(priority) AS (
            SELECT min(priority) FROM flowjobs_runs WHERE status IN {PENDING}
            UNION ALL
            SELECT (SELECT min(priority) FROM flowjobs_runs
                    WHERE status IN {PENDING} AND priority > waiting.priority)
            FROM waiting WHERE waiting.priority IS NOT NULL)"""
# The earliest run_at at one waiting priority (a seek in the claim index).
_SOONEST = f"""(SELECT min(run_at) FROM flowjobs_runs
                        WHERE status IN {PENDING} AND priority = waiting.priority)"""

COMMON = {
    # A worker's own runs whose leases expired: those it no longer runs (an outcome it could not
    # write, a claim whose commit answer was lost) are rescued, those in flight are not.
    "own_expired": """
        SELECT id, lease_epoch FROM flowjobs_runs
        WHERE status = 'executing' AND lease_expires_at < :now AND worker = :worker""",
    # One of them: as `rescue` does, fenced by its epoch.
    "rescue_one": _RESCUE
    + """
        WHERE id = :id AND lease_epoch = :epoch AND status = 'executing' AND lease_expires_at < :now
        RETURNING """
    + _RESCUED,
    # One of the worker's own runs it stops running (past its shutdown timeout): as a rescue,
    # now rather than a lease later, with the reason given and due at :due; fenced by its epoch.
    "give_back_one": _RESCUE.replace(
        "'worker lost its lease (crashed or stalled)'", ":error"
    ).replace("run_at = :now", "run_at = :due")
    + """
        WHERE id = :id AND lease_epoch = :epoch AND status = 'executing' AND worker = :worker
        RETURNING """
    + _RESCUED,
    # Forget an idempotency key whose TTL has passed, so the key can be used again.
    "release_expired_key": """
        UPDATE flowjobs_runs SET dedup_key = NULL
        WHERE task = :task AND dedup_key = :key AND idempotency_expires_at <= :now""",
    # The live run holding an idempotency key.
    "find_by_key": """
        SELECT id, status, payload_hash FROM flowjobs_runs WHERE task = :task AND dedup_key = :key""",
    # Is anything due at all? A cheap read that spares SQLite an idle write lock.
    "any_due": WAITING_PRIORITIES
    + f"""
        SELECT 1 FROM waiting WHERE priority IS NOT NULL AND {_SOONEST} <= :now LIMIT 1""",
    # The earliest time any waiting run becomes due.
    "next_due": WAITING_PRIORITIES
    + f"""
        SELECT min({_SOONEST}) FROM waiting WHERE priority IS NOT NULL""",
    # How many runs of one queue are executing right now (under the queue lock).
    "count_executing": """
        SELECT count(*) FROM flowjobs_runs WHERE queue = :queue AND status = 'executing'""",
    # Renew a lease; fenced by epoch. Returns whether a cancel was requested.
    "heartbeat": """
        UPDATE flowjobs_runs SET lease_expires_at = :lease_until, updated_at = :now
        WHERE id = :id AND lease_epoch = :epoch AND status = 'executing'
        RETURNING cancel_requested""",
    # Cancel a run that is not executing, freeing its idempotency key (as a failure does).
    "cancel_pending": f"""
        UPDATE flowjobs_runs SET status = 'canceled', finished_at = :now, updated_at = :now,
            error = 'canceled', dedup_key = NULL
        WHERE id = :id AND status IN {PENDING} RETURNING id""",
    # Cancel the waiting runs of a task whose keys start alike (a notification that a later
    # change made untrue, withdrawn in that change's transaction) and free their keys for what
    # replaces them; keys compare by bytes (0015).
    "withdraw_pending": f"""
        UPDATE flowjobs_runs SET status = 'canceled', finished_at = :now, updated_at = :now,
            error = :reason, dedup_key = NULL
        WHERE task = :task AND idempotency_key >= :low AND idempotency_key < :high
          AND status IN {PENDING} RETURNING id""",
    # Ask the worker of an executing run to stop it (seen at its next heartbeat).
    "lease_epoch": "SELECT lease_epoch FROM flowjobs_runs WHERE id = :id",
    "request_cancel": """
        UPDATE flowjobs_runs SET cancel_requested = 1, updated_at = :now
        WHERE id = :id AND status = 'executing' RETURNING id""",
    # A schedule's state; first sight records the slot it starts after (and is when it was
    # first seen: a row made earlier only to hold a disabled schedule's definition counts from now).
    "schedule_insert": """
        INSERT INTO flowjobs_schedules (id, last_slot, enabled, created_at, updated_at)
        VALUES (:id, :last_slot, NULL, :now, :now)
        ON CONFLICT (id) DO UPDATE SET last_slot = excluded.last_slot,
            created_at = excluded.created_at, updated_at = excluded.updated_at
        WHERE flowjobs_schedules.last_slot IS NULL""",
    # The definition a scheduler fires a schedule by, written by the newest process (a row
    # made here has no last slot yet: the first tick that fires it sees it for the first time).
    "schedule_define": """
        INSERT INTO flowjobs_schedules
            (id, last_slot, enabled, definition, defined_at, definition_seen_at, created_at, updated_at)
        VALUES (:id, NULL, NULL, :definition, :defined_at, :now, :now, :now)
        ON CONFLICT (id) DO UPDATE SET definition = excluded.definition,
            defined_at = excluded.defined_at, definition_seen_at = excluded.definition_seen_at,
            updated_at = excluded.updated_at,
            -- another definition from now on: `health` counts its slots from here
            created_at = CASE WHEN flowjobs_schedules.definition IS NULL
                              THEN flowjobs_schedules.created_at ELSE excluded.created_at END""",
    # A schedule's row, made empty so that it can be locked (PostgreSQL's FOR UPDATE locks no
    # row that is not there: two first ticks stored their definitions one over the other).
    "schedule_touch": """
        INSERT INTO flowjobs_schedules (id, last_slot, enabled, created_at, updated_at)
        VALUES (:id, NULL, NULL, :now, :now) ON CONFLICT (id) DO NOTHING""",
    # A process firing the standing definition says it is still there.
    "schedule_seen": """
        UPDATE flowjobs_schedules SET definition_seen_at = :now WHERE id = :id""",
    # Move a schedule's last enqueued slot forward (never back).
    "schedule_advance": """
        UPDATE flowjobs_schedules SET last_slot = :last_slot, updated_at = :now
        WHERE id = :id AND (last_slot IS NULL OR last_slot < :last_slot)""",
    # `schedules enable|disable`: an override of the configured `enabled`.
    "schedule_set_enabled": """
        UPDATE flowjobs_schedules SET enabled = :enabled, updated_at = :now WHERE id = :id""",
    # Every schedule's state.
    "schedule_states": """
        SELECT id, last_slot, enabled, created_at, definition, defined_at, definition_seen_at
        FROM flowjobs_schedules""",
    # Runs of a schedule's slots (and manual runs), by idempotency key prefix.
    "schedule_runs": """
        SELECT idempotency_key, id, status FROM flowjobs_runs
        WHERE task = :task AND idempotency_key >= :low AND idempotency_key < :high""",
    # Refused webhook requests (the inbox's `rejected` rows) received before :before, a batch.
    # Anyone can send them, so they are not kept for ever; accepted events are the record.
    "prune_rejected": """
        DELETE FROM webhook_events WHERE id IN (
            SELECT id FROM webhook_events
            WHERE status = 'rejected' AND received_at < :before LIMIT :limit)""",
    # Finished runs old enough to prune whose idempotency key no longer holds.
    "prunable": f"""
        SELECT id FROM flowjobs_runs
        WHERE status IN {TERMINAL} AND finished_at < :cutoff
          AND ((status = 'completed' AND finished_at < :completed_before)
               OR (status <> 'completed' AND finished_at < :failed_before))
          AND (dedup_key IS NULL OR idempotency_expires_at <= :now)
        LIMIT :limit""",
    # A waiting run made due now (`flowjobs trigger billing-run` on a run delayed to later).
    "run_now": f"""
        UPDATE flowjobs_runs SET run_at = :now, updated_at = :now,
            status = CASE WHEN status = 'delayed' THEN 'queued' ELSE status END
        WHERE id = :id AND status IN {PENDING} AND run_at > :now RETURNING id""",
    # -- reads for schedules, alerts, metrics and the dashboard --------------------------
    # Runs of one schedule in a time range, found by their keys (`S:<slot>` and
    # `S:manual:<time>`, ISO-8601 with milliseconds, so they sort by time), with what became of
    # the runs they triggered (the flowjobs_runs_key and flowjobs_runs_child indexes).
    "window_runs": f"""
        SELECT r.id, r.idempotency_key, r.status, r.payload,
            (SELECT count(*) FROM flowjobs_runs c WHERE c.parent_id = r.id
               AND c.status IN {UNSUCCESSFUL}) AS children_lost,
            (SELECT count(*) FROM flowjobs_runs c WHERE c.parent_id = r.id
               AND c.status NOT IN {TERMINAL}) AS children_pending
        FROM flowjobs_runs r
        WHERE r.task = :task AND ((r.idempotency_key >= :low AND r.idempotency_key <= :high)
                                  OR (r.idempotency_key >= :manual_low AND r.idempotency_key <= :manual_high))""",
    # Per queue: runs due now and waiting, runs executing, the oldest due run's run_at.
    "queue_depths": f"""
        SELECT queue,
            sum(CASE WHEN status IN {PENDING} AND run_at <= :now THEN 1 ELSE 0 END),
            sum(CASE WHEN status = 'executing' THEN 1 ELSE 0 END),
            min(CASE WHEN status IN {PENDING} AND run_at <= :now THEN run_at END)
        FROM flowjobs_runs WHERE status IN {PENDING} OR status = 'executing'
        GROUP BY queue ORDER BY queue""",
    "count_by_status": "SELECT status, count(*) FROM flowjobs_runs GROUP BY status",
    "count_by_task_status": """
        SELECT task, status, count(*) FROM flowjobs_runs GROUP BY task, status ORDER BY 1, 2""",
    "count_inbox": """
        SELECT source, status, count(*) FROM webhook_events GROUP BY source, status ORDER BY 1, 2""",
    # Runs that failed for good since :since (alerts), oldest first.
    "failed_since": """
        SELECT id, task, error, attempt FROM flowjobs_runs
        WHERE status = 'failed' AND task <> :exclude_task AND finished_at > :since
        ORDER BY finished_at LIMIT :limit""",
    # The longest-waiting run that was due at :due_before or earlier (alerts, dashboard): the
    # first run of each waiting priority, the earliest of them (at the same time, the one of
    # the lower priority number).
    "oldest_due": WAITING_PRIORITIES
    + f"""
        SELECT id, task, queue, status, run_at FROM flowjobs_runs
        WHERE id = (SELECT first FROM (
                        SELECT {_SOONEST} AS soonest, priority,
                            (SELECT id FROM flowjobs_runs
                             WHERE status IN {PENDING} AND priority = waiting.priority
                             ORDER BY run_at, id LIMIT 1) AS first
                        FROM waiting WHERE priority IS NOT NULL) firsts
                    ORDER BY soonest, priority LIMIT 1)
          AND run_at <= :due_before""",
    # Every priority some run waits at, lowest first.
    "waiting_priorities": WAITING_PRIORITIES
    + """
        SELECT priority FROM waiting WHERE priority IS NOT NULL""",
    # Runs of one priority waiting for a future time, soonest first (`JobStore.upcoming`).
    "upcoming_at_priority": f"""
        SELECT id, task, queue, status, run_at FROM flowjobs_runs
        WHERE status IN {PENDING} AND priority = :priority AND run_at > :now
        ORDER BY run_at, id LIMIT :limit""",
    # Runs whose lease has expired: their worker died or stalled (doctor).
    "expired_leases": """
        SELECT count(*), min(lease_expires_at) FROM flowjobs_runs
        WHERE status = 'executing' AND lease_expires_at < :now""",
    # -- workers (flowjobs_workers): presence kept by heartbeats ----------------------------
    "worker_register": """
        INSERT INTO flowjobs_workers (id, host, pid, version, queues, concurrency, started_at,
                                      heartbeat_at, in_flight, processed, stopped_at)
        VALUES (:id, :host, :pid, :version, :queues, :concurrency, :now, :now, 0, 0, NULL)
        ON CONFLICT (id) DO UPDATE SET heartbeat_at = :now, stopped_at = NULL""",
    "worker_heartbeat": """
        UPDATE flowjobs_workers SET heartbeat_at = :now, in_flight = :in_flight,
            processed = :processed WHERE id = :id""",
    "worker_stopped": """
        UPDATE flowjobs_workers SET heartbeat_at = :now, stopped_at = :now, in_flight = 0,
            processed = :processed WHERE id = :id""",
    "workers_since": """
        SELECT id, host, pid, version, queues, concurrency, started_at, heartbeat_at, in_flight,
               processed, stopped_at
        FROM flowjobs_workers WHERE heartbeat_at >= :since ORDER BY started_at DESC, id""",
    "workers_prune": "DELETE FROM flowjobs_workers WHERE heartbeat_at < :before",
    # Store one log line written through a task's context.
    "insert_log": """
        INSERT INTO flowjobs_logs (run_id, attempt, at, level, message)
        VALUES (:run_id, :attempt, :at, :level, :message)""",
}

SQLITE = {
    # The replays of some runs (`:ids`, a JSON array), through the partial index on replay_of.
    "replays": """
        SELECT replay_of, id FROM flowjobs_runs
        WHERE replay_of IN (SELECT value FROM json_each(:ids)) ORDER BY created_at, id""",
    # Claim up to :limit due runs, best first; BEGIN IMMEDIATE serialises claimers. The index
    # is named so that no other index on status can lure the planner into sorting every row.
    "claim": f"""
        UPDATE flowjobs_runs SET status = 'executing', attempt = attempt + 1,
            lease_epoch = lease_epoch + 1, lease_expires_at = :lease_until, worker = :worker,
            attempt_started_at = :now, started_at = COALESCE(started_at, :now), updated_at = :now
        WHERE id IN (
            SELECT id FROM flowjobs_runs INDEXED BY flowjobs_runs_waiting
            WHERE status IN {PENDING} AND run_at <= :now
              /*queues*/ /*skip*/
            ORDER BY priority, run_at, id LIMIT :limit)
        RETURNING {_CLAIMED}""",
    # Expired leases: retry, fail (attempts used up) or cancel (requested); one statement.
    "rescue": _RESCUE
    + """
        WHERE status = 'executing' AND lease_expires_at < :now AND worker <> :worker
        RETURNING """
    + _RESCUED,
    # Read a schedule's state inside the tick's write transaction (BEGIN IMMEDIATE serialises).
    "schedule_lock": """
        SELECT last_slot, definition, defined_at, definition_seen_at
        FROM flowjobs_schedules WHERE id = :id""",
}

POSTGRESQL = {
    # The replays of some runs (`:ids`, an array), through the partial index on replay_of.
    "replays": """
        SELECT replay_of, id FROM flowjobs_runs
        WHERE replay_of = ANY(:ids) ORDER BY created_at, id""",
    # Claim up to :limit due runs, best first; SKIP LOCKED lets claimers pass each other.
    "claim": f"""
        WITH picked AS (
            SELECT id FROM flowjobs_runs
            WHERE status IN {PENDING} AND run_at <= :now
              /*queues*/ /*skip*/
            ORDER BY priority, run_at, id LIMIT :limit
            FOR UPDATE SKIP LOCKED)
        UPDATE flowjobs_runs r SET status = 'executing', attempt = r.attempt + 1,
            lease_epoch = r.lease_epoch + 1, lease_expires_at = :lease_until, worker = :worker,
            attempt_started_at = :now, started_at = COALESCE(r.started_at, :now), updated_at = :now
        FROM picked WHERE r.id = picked.id
        RETURNING {", ".join("r." + c.strip() for c in _CLAIMED.split(","))}""",
    # Expired leases: retry, fail or cancel; rows another rescuer holds are skipped.
    "rescue": _RESCUE
    + """
        WHERE id IN (SELECT id FROM flowjobs_runs
                     WHERE status = 'executing' AND lease_expires_at < :now AND worker <> :worker
                     FOR UPDATE SKIP LOCKED)
        RETURNING """
    + _RESCUED,
    # Read and lock a schedule's state so concurrent scheduler ticks queue one behind another.
    "schedule_lock": """
        SELECT last_slot, definition, defined_at, definition_seen_at
        FROM flowjobs_schedules WHERE id = :id FOR UPDATE""",
}

# Statements only some dialects need; a dialect that has no use for one leaves it out (SQLite
# serialises claimers with its write lock and wakes workers by watching the WAL file).
DIALECT_ONLY: dict[str, dict[str, str]] = {
    "sqlite": {},
    "postgresql": {
        # Serialise claimers of one concurrency-limited queue until the transaction ends.
        "lock_queue": "SELECT pg_advisory_xact_lock(:lock_key)",
        # Wake listening workers when the inserting transaction commits.
        "notify": "SELECT pg_notify('flowjobs_runs', :queue)",
        # Before a claim, for the rest of its transaction: with statistics taken while no run was
        # waiting (autoanalyze waits for 10 % of the table to change), the planner read every due
        # run through flowjobs_runs_next_due and sorted them to take ten (6.5 ms with 2,000 due,
        # ~1 s with 200,000) instead of walking the claim index in order (0.9 ms). That index
        # is gone (revision 0012), but a bitmap or sequential scan and a sort is still a plan the
        # planner may cost lower; this keeps the ordered walk. Sorting is only discouraged: a
        # plan that needs one still gets it.
        "claim_plan": "SET LOCAL enable_sort = off",
    },
}

_FINISH_COLUMNS = (
    ("id", "TEXT"),
    ("epoch", "INTEGER"),
    ("status", "TEXT"),
    ("result", "TEXT"),
    ("error", "TEXT"),
    ("run_at", "BIGINT"),
    ("finished_at", "BIGINT"),
    ("crashed", "INTEGER"),
)
FINISH_COLUMN_NAMES = tuple(name for name, _ in _FINISH_COLUMNS)
ATTEMPT_COLUMNS = (
    "run_id",
    "number",
    "worker",
    "started_at",
    "finished_at",
    "outcome",
    "error",
    "traceback",
    "duration_ms",
)


def _rows(columns, count: int, cast: bool = False) -> str:
    def value(name, kind, i):
        return f"CAST(:{name}_{i} AS {kind})" if cast else f":{name}_{i}"

    return ", ".join(
        "(" + ", ".join(value(n, k, i) for n, k in columns) + ")" for i in range(count)
    )


# Parameters of a turn's claim beside its finish: worker, limit, now, lease_until, queues
TURN_CLAIM_PARAMETERS = 5


def finishes_by_column(dialect: str, count: int, extra: int = 0) -> bool:
    """Whether `count` outcomes are sent as one array per column (`:id` …) instead of numbered
    rows (`:id_0` …): on PostgreSQL past psycopg's 50 cached parameters (with `extra` more in
    the same statement)."""
    return dialect == "postgresql" and count * len(_FINISH_COLUMNS) + 1 + extra > 50


@lru_cache(maxsize=1024)
def finish_batch(count: int, lean: bool = False, dialect: str = "sqlite") -> str:
    """End `count` attempts in one statement, each row fenced by its epoch; RETURNING names the
    runs actually written. `lean` is for runs that end `completed`: it leaves
    run_at, worker and dedup_key alone, so SQLite need not touch the indexes on them (it
    updates an index whenever a column of it is assigned, even to the same value).
    Parameters as `finishes_by_column` says (see `insert_runs` for why)."""
    values, update = _finish_parts(count, lean, dialect, finishes_by_column(dialect, count))
    return f"""
        WITH {values}
        {update}"""


@lru_cache(maxsize=2)
def finish_one(lean: bool) -> str:
    """SQLite: end one attempt, as `finish_batch(1, lean)` does (the same parameters, `:id_0`
    …), as a plain UPDATE: no table of outcomes to build and no RETURNING, each a temporary
    B-tree in SQLite; whether the row was written is the statement's change count."""
    update = _finish_parts(1, lean, "sqlite", False)[1]
    update = re.sub(r"\bv\.(\w+)", r":\1_0", update.replace("FROM v\n", ""))
    return update.replace("\n        RETURNING flowjobs_runs.id", "")


def _finish_parts(
    count: int, lean: bool, dialect: str, by_column: bool, now: str = "now"
) -> tuple[str, str]:
    """`finish_batch`'s pieces: the outcomes as a table `v` (numbered rows or, `by_column`,
    arrays), and the fenced UPDATE from it, stamped with the parameter `now`."""
    names = ", ".join(n for n, _ in _FINISH_COLUMNS)
    if by_column:
        arrays = ", ".join(f"CAST(:{n} AS {kind}[])" for n, kind in _FINISH_COLUMNS)
        rows = f"SELECT * FROM unnest({arrays})"
    else:
        rows = f"VALUES {_rows(_FINISH_COLUMNS, count, cast=True)}"
    rescheduling = (
        ""
        if lean
        else """
            run_at = COALESCE(v.run_at, flowjobs_runs.run_at),
            worker = CASE WHEN v.status = 'retrying' THEN NULL ELSE flowjobs_runs.worker END,
            dedup_key = CASE WHEN v.status IN ('failed', 'canceled') THEN NULL
                ELSE flowjobs_runs.dedup_key END,
            crashes = flowjobs_runs.crashes + v.crashed,"""
    )
    update = f"""UPDATE flowjobs_runs SET status = v.status, result = v.result, error = v.error,{rescheduling}
            finished_at = v.finished_at, updated_at = :{now}, lease_expires_at = NULL
        FROM v
        WHERE flowjobs_runs.id = v.id AND flowjobs_runs.lease_epoch = v.epoch
          AND flowjobs_runs.status = 'executing'
        RETURNING flowjobs_runs.id"""
    return f"v({names}) AS ({rows})", update


def turn_postgresql(count: int, some_queues: bool) -> str:
    """PostgreSQL, a worker's common turn in one statement (it commits by itself): end `count`
    succeeded attempts (`finish_batch`, lean, stamped :finish_now; none when 0) and claim up
    to :limit due runs (the claim's own `picked` and UPDATE). The two UPDATEs touch different
    rows (executing ones, waiting ones), as one statement allows. Each row: the ids of the
    runs finished (an array, the same in every row), then a claimed run's columns (NULLs when
    none was). Outcomes go as arrays once the statement would pass 50 parameters."""
    by_column = finishes_by_column("postgresql", count, TURN_CLAIM_PARAMETERS)
    return _turn_postgresql(-1 if by_column else count, some_queues)


@lru_cache(maxsize=64)
def _turn_postgresql(count: int, some_queues: bool) -> str:  # count -1: any, by column
    claim_sql = (
        POSTGRESQL["claim"]
        .replace("/*queues*/", _QUEUE_FILTERS["postgresql"][0] if some_queues else "")
        .replace("/*skip*/", "")
    )
    picked, claim_update = claim_sql.split("FOR UPDATE SKIP LOCKED)", 1)
    picked = picked.lstrip().removeprefix("WITH ") + "FOR UPDATE SKIP LOCKED)"
    parts = []
    if count:
        values, update = _finish_parts(count, True, "postgresql", count < 0, now="finish_now")
        parts += [values, f"done AS ({update})"]
    parts += [picked, f"claimed AS ({claim_update.strip()})"]
    finished = "ARRAY(SELECT id FROM done)" if count else "CAST(NULL AS text[])"
    return to_pyformat(
        f"WITH {', '.join(parts)} "
        f"SELECT {finished}, claimed.* FROM (SELECT 1) AS one LEFT JOIN claimed ON true"
    )


@lru_cache(maxsize=512)
def insert_attempts(count: int) -> str:
    """Record `count` attempts' outcomes in one statement."""
    return f"INSERT INTO flowjobs_attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES " + _rows(
        [(c, "") for c in ATTEMPT_COLUMNS], count
    )


_PARAM = re.compile(r"(?<![:\w]):(\w+)")


def to_pyformat(sql: str) -> str:
    return _PARAM.sub(r"%(\1)s", sql)


_QUEUE_FILTERS = {
    "sqlite": (
        "AND queue IN (SELECT value FROM json_each(:queues))",
        "AND queue NOT IN (SELECT value FROM json_each(:skip_queues))",
    ),
    "postgresql": ("AND queue = ANY(:queues)", "AND NOT (queue = ANY(:skip_queues))"),
}


@lru_cache(maxsize=16)
def claim(dialect: str, some_queues: bool, skip_queues: bool, one: bool = False) -> str:
    """The claim statement, filtered to :queues and/or away from :skip_queues only when asked
    (an unused filter still costs a json_each scan per claim on SQLite). `one` (SQLite, :limit
    1): the run is picked by a scalar subquery, where `IN (…)` builds a temporary B-tree."""
    wanted, skipped = _QUEUE_FILTERS[dialect]
    if dialect == "postgresql":
        wanted, skipped = to_pyformat(wanted), to_pyformat(skipped)
    sql = catalogue(dialect)["claim"]
    if one and dialect == "sqlite":
        sql = sql.replace("WHERE id IN (", "WHERE id = (", 1)
    return sql.replace("/*queues*/", wanted if some_queues else "").replace(
        "/*skip*/", skipped if skip_queues else ""
    )


def catalogue(dialect: str) -> dict[str, str]:
    """The statements every dialect has, written in the dialect's parameter style."""
    specific = SQLITE if dialect == "sqlite" else POSTGRESQL
    return _styled(dialect, {**COMMON, **specific})


def dialect_only(dialect: str) -> dict[str, str]:
    """The statements only this dialect has (`DIALECT_ONLY`), in its parameter style."""
    return _styled(dialect, DIALECT_ONLY[dialect])


def _styled(dialect: str, statements: dict[str, str]) -> dict[str, str]:
    if dialect == "postgresql":
        return {name: to_pyformat(sql) for name, sql in statements.items()}
    return {name: spelled(dialect, sql) for name, sql in statements.items()}


@lru_cache(maxsize=8)
def attempt_durations(bounds_ms: tuple[float, ...]) -> str:
    """Finished attempts per task and outcome: count, total ms, and the cumulative count at
    each bound (a histogram). A succeeded attempt lives in its completed run row (see
    `finish_batch`), not in flowjobs_attempts."""
    cases = ", ".join(f"sum(CASE WHEN d <= {b:g} THEN 1 ELSE 0 END)" for b in bounds_ms)
    return (
        f"SELECT task, outcome, count(*), coalesce(sum(d), 0), {cases} FROM ("
        "SELECT r.task AS task, a.outcome AS outcome, a.duration_ms AS d "
        "FROM flowjobs_attempts a JOIN flowjobs_runs r ON r.id = a.run_id "
        "WHERE a.duration_ms IS NOT NULL "
        "UNION ALL SELECT task, 'succeeded', finished_at - attempt_started_at FROM flowjobs_runs r "
        "WHERE status = 'completed' AND attempt_started_at IS NOT NULL AND NOT EXISTS ("
        "SELECT 1 FROM flowjobs_attempts a WHERE a.run_id = r.id AND a.number = r.attempt)"
        ") AS t GROUP BY task, outcome ORDER BY 1, 2"
    )


def insert_runs_notifying(count: int, shared: tuple[str, ...] = ()) -> str:
    """PostgreSQL: `insert_runs` (beyond two rows, `insert_runs_by_column(shared)`) and the
    wake-up NOTIFY for each queue it filled, in one statement, so a trigger outside a
    transaction is one round trip (it commits on its own)."""
    if runs_by_column("postgresql", count):
        return _notifying(insert_runs_by_column(shared))
    return _notifying(insert_runs("postgresql", count))


@lru_cache(maxsize=256)
def _notifying(insert: str) -> str:
    insert = insert.replace("RETURNING id", "RETURNING id, queue")
    return (
        f"WITH ins AS ({insert}) SELECT ins.id FROM ins CROSS JOIN "
        "(SELECT count(pg_notify('flowjobs_runs', q)) FROM (SELECT DISTINCT queue AS q FROM ins) AS d) AS n"
    )


RUN_COLUMN_NAMES = tuple(name.strip() for name in RUN_COLUMNS.split(","))
# PostgreSQL types of RUN_COLUMNS, for inserting runs from one array per column
_RUN_COLUMN_TYPES = {
    "priority": "integer",
    "attempt": "integer",
    "max_attempts": "integer",
    "run_at": "bigint",
    "created_at": "bigint",
    "updated_at": "bigint",
    "idempotency_expires_at": "bigint",
}
# psycopg parses a statement for its placeholders on every call unless it has at most 50
# parameters (then the parse is cached): 2 rows of 17.
_PG_ROWS_MAX = 2


def runs_by_column(dialect: str, count: int) -> bool:
    """Whether `insert_runs(dialect, count)` takes one array per column instead of rows."""
    return dialect == "postgresql" and count > _PG_ROWS_MAX


@lru_cache(maxsize=1024)
def insert_runs(dialect: str, count: int) -> str:
    """Insert `count` runs; a row whose key is live is skipped; RETURNING names those
    inserted. The conflict target names the unique index's predicate (it is partial:
    revision 0011).

    Parameters: `count` rows of RUN_COLUMNS (dedup_key = the idempotency key), positional;
    on PostgreSQL beyond two rows, one array per column (`unnest`; `runs_by_column`): a
    500-row VALUES list has 8,500 placeholders, which psycopg parsed anew on every call — two
    thirds of a batch's time. (A single run is cheaper as a row: 17 one-element arrays cost
    more to send than the parse psycopg caches.) The arrays go in PostgreSQL's binary format
    (`%b`): psycopg writes a text array in Python, matching every element against a regular
    expression to decide its quoting, which cost three times the client's CPU of the binary
    form (34 against 11 µs a run in a batch of 500)."""
    if runs_by_column(dialect, count):
        return insert_runs_by_column()
    row = "(" + ", ".join(["?" if dialect == "sqlite" else "%s"] * len(RUN_COLUMN_NAMES)) + ")"
    rows = "VALUES " + ", ".join([row] * count)
    return f"INSERT INTO flowjobs_runs ({RUN_COLUMNS}) {rows} {_SKIP_LIVE_KEYS}"


_SKIP_LIVE_KEYS = (
    "ON CONFLICT (task, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING id"
)


@lru_cache(maxsize=256)
def insert_runs_by_column(shared: tuple[str, ...] = ()) -> str:
    """PostgreSQL: `insert_runs` from one array per column, except the columns in `shared`
    (names of RUN_COLUMNS), whose value is the same in every row and goes once, as a single
    parameter. Parameters: the shared values, then the other columns' arrays, each in
    RUN_COLUMNS order. In a batch most columns are shared (task, queue, status, times,
    priority, …): psycopg writes each element of an array in Python, so sending 3–5 arrays
    instead of 17 took a batch of 500 from ~26,000 to ~41,000 rows a second (client CPU 9.5 →
    3 µs a row)."""
    kind = {name: _RUN_COLUMN_TYPES.get(name, "text") for name in RUN_COLUMN_NAMES}
    each = [name for name in RUN_COLUMN_NAMES if name not in shared]
    values = ", ".join(f"%b::{kind[name]}" if name in shared else f"u.{name}" for name in kind)
    arrays = ", ".join(f"%b::{kind[name]}[]" for name in each)
    return (
        f"INSERT INTO flowjobs_runs ({RUN_COLUMNS}) SELECT {values} "
        f"FROM unnest({arrays}) AS u({', '.join(each)}) {_SKIP_LIVE_KEYS}"
    )


@lru_cache(maxsize=1024)
def insert_counted_runs(count: int) -> str:
    """SQLite: `insert_runs` without RETURNING (a temporary B-tree in SQLite): the statement's
    change count says how many rows went in (`runs_present` names them when not all did). Runs
    without keys use it too: its conflict clause costs them nothing measurable (87.3 against
    87.2 µs of CPU an insert without and with it, medians of 10 interleaved rounds of 20,000)."""
    return insert_runs("sqlite", count).removesuffix(" RETURNING id")


@lru_cache(maxsize=1024)
def runs_present(count: int) -> str:
    """SQLite: which of `count` run ids (positional) are in the table."""
    return "SELECT id FROM flowjobs_runs WHERE id IN (" + ", ".join(["?"] * count) + ")"


# PostgreSQL, after rows were copied in with their ids (`db copy`): the log id sequence
# continues after the highest id.
RESET_LOG_SEQUENCE = (
    "SELECT setval(pg_get_serial_sequence('flowjobs_logs', 'id'), "
    "COALESCE((SELECT max(id) FROM flowjobs_logs), 0) + 1, false)"
)
