"""The job store: every read and write of the job tables, over a DB-API connection.

Writes that must be atomic run in one transaction opened by the caller (`Database.transaction`)
or joined from the caller's own transaction (`trigger(session=...)`). The statements
themselves live in `queries.py`, one catalogue per dialect.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Callable, Collection
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from flowjobs.store.db import Database, close_quietly
from flowjobs.store.queries import (
    ATTEMPT_COLUMNS,
    FINISH_COLUMN_NAMES,
    RUN_COLUMN_NAMES,
    TURN_CLAIM_PARAMETERS,
    catalogue,
    dialect_only,
    finish_batch,
    finish_one,
    finishes_by_column,
    insert_attempts,
    insert_counted_runs,
    insert_runs,
    insert_runs_by_column,
    insert_runs_notifying,
    runs_by_column,
    runs_present,
    spelled,
    to_pyformat,
    turn_postgresql,
)
from flowjobs.store.queries import attempt_durations as attempt_durations_sql
from flowjobs.store.queries import claim as claim_sql
from flowjobs.store.states import TERMINAL, AttemptOutcome, RunStatus
from flowjobs.store.text import storable
from flowjobs.store.wakeups import Wakeups

DEFAULT_MAX_CRASHES = 10
INSERT_CHUNK = 500
# PostgreSQL: the session of the connection a worker's one-statement turns run on (see
# `JobStore._turn_connection`). Each turn's statement is planned once per connection (a generic
# plan: psycopg prepares a statement run five times), where a custom plan for every turn cost
# ~0.45 ms of planning, a third of a turn at concurrency 1. A generic plan is made without the
# values (the LIMIT, the time), so the plan's shape is fixed here instead: walk the claim index
# in order and reach every other row by its primary key through nested loops — never a sort,
# a hash or merge join, or a sequential scan, whatever the statistics say (the generic plan
# once joined the claimed rows by hashing the whole table; stale statistics once sorted every
# due run).
TURN_SESSION = (
    "SET plan_cache_mode = force_generic_plan",
    "SET enable_sort = off",
    "SET enable_hashjoin = off",
    "SET enable_mergejoin = off",
    "SET enable_seqscan = off",
)


# a member looked up once: `RunStatus.X` goes through the enum's descriptor (~0.15 µs) for
# each run of a batch
_DELAYED, _QUEUED = RunStatus.DELAYED, RunStatus.QUEUED
_DELAYED_TEXT, _QUEUED_TEXT = _DELAYED.value, _QUEUED.value


@dataclass(slots=True)
class NewRun:
    """A run to insert. `Client.new_runs` builds these positionally: keep the field order."""

    id: str
    task: str
    queue: str
    payload: str  # JSON text
    payload_hash: str
    priority: int
    max_attempts: int
    run_at: int
    idempotency_key: str | None = None
    idempotency_expires_at: int | None = None
    parent_id: str | None = None
    replay_of: str | None = None


@dataclass(slots=True)
class Enqueued:
    id: str
    task: str
    status: str
    deduplicated: bool
    payload_hash: str


@dataclass
class ClaimedRun:
    id: str
    task: str
    queue: str
    payload: str
    attempt: int
    max_attempts: int
    lease_epoch: int
    created_at: int
    run_at: int
    crashes: int = 0  # attempts lost to crashes (they do not count against max_attempts)


@dataclass
class Finish:
    """The end of one attempt, as the worker records it."""

    run: ClaimedRun
    status: str
    outcome: str
    worker: str
    now: int
    started_at: int | None
    result: str | None = None
    error: str | None = None
    traceback: str | None = None
    retry_at: int | None = None
    crashed: bool = False  # the attempt was lost to a fault of the program, not the task's
    follow_up: NewRun | None = None  # inserted with the outcome, if it is written (failure hooks)


@dataclass
class Rescued:
    id: str
    task: str
    payload: str
    attempt: int
    worker: str | None
    attempt_started_at: int | None
    status: str  # what the run became: retrying, failed (crash budget used up) or canceled


class JobStore:
    def __init__(self, db: Database):
        self.db = db
        self.sql = catalogue(db.dialect)
        only = dialect_only(db.dialect)
        # PostgreSQL only: the per-queue advisory lock and the wake-up NOTIFY
        self._lock_queue_sql = only.get("lock_queue")
        self._claim_plan_sql = only.get("claim_plan")
        self._notify_sql = only.get("notify")
        self.dialect = db.dialect
        self._wakeups = Wakeups(db)
        self._turn_lock = threading.Lock()
        self._turn_conn = None  # PostgreSQL: see _turn_connection
        self._closed = False

    # -- helpers -----------------------------------------------------------------------
    def _list(self, values: list[str]):
        return json.dumps(values) if self.dialect == "sqlite" else list(values)

    def _prepare(self, sql: str) -> str:
        return _pyformat(sql) if self.dialect == "postgresql" else spelled(self.dialect, sql)

    # -- enqueue -----------------------------------------------------------------------
    def enqueue(self, conn, runs: list[NewRun], now: int) -> list[Enqueued]:
        """Insert runs in the caller's transaction; a live idempotency key returns its run.

        A key may be held by a run whose key has expired: then the key is released and the new
        run inserted. That is looked for only among the runs the insert skipped, so a batch of
        new keys (a billing fan-out) costs its insert and nothing more; before, every keyed run
        sent a release of its own first."""
        inserted = self._insert(conn, runs, now)
        skipped = [r for r in runs if r.id not in inserted]
        if skipped:
            # a key this batch has just taken is live: its duplicates in the batch share its run
            taken = {(r.task, r.idempotency_key) for r in runs if r.id in inserted}
            held = [r for r in skipped if (r.task, r.idempotency_key) not in taken]
            if held:
                self._executemany(
                    conn,
                    "release_expired_key",
                    [{"task": r.task, "key": r.idempotency_key, "now": now} for r in held],
                )
                inserted |= self._insert(conn, held, now)
        results = []
        for run in runs:
            if run.id in inserted:
                status = _DELAYED if run.run_at > now else _QUEUED
                results.append(Enqueued(run.id, run.task, status, False, run.payload_hash))
                continue
            row = conn.execute(
                self.sql["find_by_key"], {"task": run.task, "key": run.idempotency_key}
            ).fetchone()
            results.append(Enqueued(row[0], run.task, row[1], True, row[2]))
        if self._notify_sql and inserted:
            for queue in {r.queue for r in runs if r.id in inserted}:
                conn.execute(self._notify_sql, {"queue": queue})
        return results

    def _insert(self, conn, runs: list[NewRun], now: int) -> set[str]:
        """Insert runs, INSERT_CHUNK to a statement; rows whose key is live are skipped;
        returns the ids inserted."""
        inserted: set[str] = set()
        for start in range(0, len(runs), INSERT_CHUNK):
            chunk = runs[start : start + INSERT_CHUNK]
            if self.dialect == "sqlite":
                inserted |= self._insert_counted(conn, chunk, now)
            else:
                inserted |= self._insert_chunk(conn, chunk, now)
        return inserted

    @staticmethod
    def _insert_counted(conn, runs: list[NewRun], now: int) -> set[str]:
        """SQLite: insert without RETURNING (a temporary B-tree built in every statement); the
        change count says whether every row went in, and only when some did not are the ids
        looked up (a new run's id is new: if it is in the table, this statement put it there)."""
        count = conn.execute(insert_counted_runs(len(runs)), _run_values(runs, now)).rowcount
        if count == len(runs):
            return {r.id for r in runs}
        if count == 0:
            return set()
        found = conn.execute(runs_present(len(runs)), [r.id for r in runs]).fetchall()
        return {row[0] for row in found}

    def enqueue_alone(self, runs: list[NewRun], now: int) -> list[Enqueued]:
        """Insert runs in a transaction of their own. Up to INSERT_CHUNK runs without
        idempotency keys (nothing to look up or release first) are one statement that commits
        by itself, the wake-up NOTIFY included: on PostgreSQL one round trip instead of four."""
        if len(runs) > INSERT_CHUNK or any(r.idempotency_key is not None for r in runs):
            with self.db.transaction(rows=len(runs)) as conn:
                return self.enqueue(conn, runs, now)
        if self.dialect == "sqlite":  # no key, no conflict: every row goes in
            with self.db.statement(len(runs)) as conn:
                inserted = self._insert_counted(conn, runs, now)
        else:
            with self.db.statement() as conn:
                inserted = self._insert_chunk(conn, runs, now, notify=True)
        missing = [r.id for r in runs if r.id not in inserted]
        if missing:  # without keys every row is inserted; anything else is a broken invariant
            raise RuntimeError(f"runs {missing} were not inserted")
        return [
            Enqueued(
                r.id,
                r.task,
                _DELAYED if r.run_at > now else _QUEUED,
                False,
                r.payload_hash,
            )
            for r in runs
        ]

    @staticmethod
    def _insert_chunk(conn, runs: list[NewRun], now: int, notify: bool = False) -> set[str]:
        """PostgreSQL: insert a batch in one statement (positional parameters, no per-row dict
        of names: row after row, or by column: `queries.insert_runs`); rows whose key is live
        are skipped; returns the ids inserted. `notify`: the statement also sends the wake-up
        (`queries.insert_runs_notifying`)."""
        params: list[Any]
        shared: tuple[str, ...] = ()
        if runs_by_column("postgresql", len(runs)):
            shared, params = _by_column(_run_rows(runs, now))
            sql = insert_runs_by_column(shared)
        else:
            params = _run_values(runs, now)
            sql = insert_runs("postgresql", len(runs))
        if notify:
            sql = insert_runs_notifying(len(runs), shared)
        return {row[0] for row in conn.execute(sql, params).fetchall()}

    def _executemany(self, conn, name: str, params: list[dict]) -> None:
        if self.dialect == "sqlite":
            conn.executemany(self.sql[name], params)
        else:
            with conn.cursor() as cur:
                cur.executemany(self.sql[name], params)

    # -- claim -------------------------------------------------------------------------
    def claim(
        self,
        worker: str,
        limit: int,
        queues: list[str],
        limits: dict[str, int],
        now: int,
        lease_ms: int,
        check_due: bool = True,
    ) -> list[ClaimedRun]:
        """Claim up to `limit` due runs of `queues` ("*" = all), honouring per-queue limits."""
        return self.finish_and_claim([], worker, limit, queues, limits, now, lease_ms, check_due)[1]

    def finish_and_claim(
        self,
        finishes: list[Finish],
        worker: str,
        limit: int,
        queues: list[str],
        limits: dict[str, int],
        now: int,
        lease_ms: int,
        check_due: bool = True,
    ) -> tuple[list[bool], list[ClaimedRun]]:
        """Write ended attempts (see `finish_many`) and claim up to `limit` due runs, in one
        transaction: the worker's loop, one write transaction per turn instead of two.

        With nothing to write, on SQLite a cheap read first checks that anything is due, so
        that an idle worker does not take the write lock (`check_due=False` skips it when a
        backlog is known)."""
        if limit <= 0 and not finishes:
            return [], []
        if (
            not finishes
            and self.dialect == "sqlite"
            and check_due
            and not self._one(self.sql["any_due"], {"now": now})
        ):
            return [], []
        every = "*" in queues
        if (
            self.dialect == "postgresql"
            and not [q for q in limits if every or q in queues]
            and all(
                f.outcome == AttemptOutcome.SUCCEEDED
                and f.status == RunStatus.COMPLETED
                and f.follow_up is None
                for f in finishes
            )
        ):
            return self._turn_postgresql(finishes, worker, limit, queues, now, lease_ms)
        with self.db.transaction() as conn:
            written = self.finish_many(finishes, conn) if finishes else []
            claimed = (
                self._claim(conn, worker, limit, queues, limits, now, lease_ms) if limit > 0 else []
            )
        return written, claimed

    def _turn_postgresql(
        self, finishes: list[Finish], worker, limit, queues, now, lease_ms
    ) -> tuple[list[bool], list[ClaimedRun]]:
        """PostgreSQL, the common turn (succeeded attempts: no attempt rows, no follow-ups; no
        concurrency-limited queue, whose claim needs a count first): one statement that
        commits by itself (`queries.turn_postgresql`) — one round trip and one statement for
        the driver to send where BEGIN, finish, claim plan, claim and COMMIT were five of
        each, on this store's own connection (see `_turn_connection`)."""
        every = "*" in queues
        params = self._claim_statement(worker, limit, queues, every, [], now, lease_ms)[1]
        if finishes:
            by_column = finishes_by_column("postgresql", len(finishes), TURN_CLAIM_PARAMETERS)
            params.update(self._finish_params(finishes, by_column), finish_now=finishes[0].now)
        sql = turn_postgresql(len(finishes), not every)
        with self._turn_connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        written = set(rows[0][0] or ())
        claimed = [ClaimedRun(*row[1:]) for row in rows if row[1] is not None]
        return [f.run.id in written for f in finishes], claimed

    @contextmanager
    def _turn_connection(self):
        """The connection this process's worker turns use on PostgreSQL, its session set up
        by TURN_SESSION: turns planned once (generic plans), in the one shape that is right
        whatever the statistics — a one-statement turn has no transaction to `SET LOCAL` in,
        as `claim_plan` does for the other claims. Kept apart from the pool so that no other
        query runs under those settings. A failure closes it; the next turn opens another."""
        with self._turn_lock:
            conn = self._turn_conn
            if conn is None:
                conn = self.db.connect()
                try:
                    for setting in TURN_SESSION:
                        conn.execute(setting)
                except BaseException:
                    close_quietly(conn)
                    raise
                if not self._closed:  # after close(): one use, then closed (nothing to leak)
                    self._turn_conn = conn
            try:
                yield conn
            except BaseException:
                self._turn_conn = None
                close_quietly(conn)
                raise
            if self._turn_conn is not conn:
                close_quietly(conn)

    def close(self) -> None:
        """Close this store's own connection (`_turn_connection`); the pool is the Database's."""
        with self._turn_lock:
            conn, self._turn_conn = self._turn_conn, None
            self._closed = True
        if conn is not None:
            close_quietly(conn)

    def _claim(self, conn, worker, limit, queues, limits, now, lease_ms) -> list[ClaimedRun]:
        if self._claim_plan_sql:  # PostgreSQL: walk the claim index, whatever the statistics
            conn.execute(self._claim_plan_sql)
        every = "*" in queues
        limited = [q for q in limits if every or q in queues]
        claimed = self._claim_group(conn, worker, limit, queues, every, limited, now, lease_ms)
        for queue in limited:
            if len(claimed) >= limit:
                break
            claimed += self._claim_limited(
                conn, worker, limit - len(claimed), queue, limits[queue], now, lease_ms
            )
        return claimed

    def _claim_group(self, conn, worker, limit, queues, every, skip, now, lease_ms):
        sql, params = self._claim_statement(worker, limit, queues, every, skip, now, lease_ms)
        return [ClaimedRun(*row) for row in conn.execute(sql, params).fetchall()]

    def _claim_statement(self, worker, limit, queues, every, skip, now, lease_ms):
        params = {"worker": worker, "limit": limit, "now": now, "lease_until": now + lease_ms}
        if not every:
            params["queues"] = self._list([q for q in queues if q != "*"])
        if skip:
            params["skip_queues"] = self._list(skip)
        return claim_sql(self.dialect, not every, bool(skip), limit == 1), params

    def _claim_limited(self, conn, worker, limit, queue, queue_limit, now, lease_ms):
        """Under the queue's lock (PostgreSQL: an advisory lock held to the end of the
        transaction; SQLite: the write lock), count what executes and claim only the room left."""
        if self._lock_queue_sql:
            conn.execute(self._lock_queue_sql, {"lock_key": _lock_key(queue)})
        running = conn.execute(self.sql["count_executing"], {"queue": queue}).fetchone()[0]
        room = min(limit, queue_limit - running)
        if room <= 0:
            return []
        return self._claim_group(conn, worker, room, [queue], False, [], now, lease_ms)

    def next_due(self) -> int | None:
        row = self._one(self.sql["next_due"], {})
        return row[0] if row else None

    # -- leases ------------------------------------------------------------------------
    def heartbeat(self, run_id: str, epoch: int, now: int, lease_ms: int) -> tuple[bool, bool]:
        """Renew a lease. Returns (still ours, cancel requested)."""
        with self.db.transaction() as conn:
            row = conn.execute(
                self.sql["heartbeat"],
                {"id": run_id, "epoch": epoch, "now": now, "lease_until": now + lease_ms},
            ).fetchone()
        return (row is not None, bool(row and row[0]))

    def finish(self, run: ClaimedRun, **fields) -> bool:
        """End the current attempt; False when the lease was lost (nothing written)."""
        return self.finish_many([Finish(run, **fields)])[0]

    def finish_many(self, items: list[Finish], conn=None) -> list[bool]:
        """End many attempts in one transaction (`conn`'s, or a new one); each is fenced.

        A succeeded attempt writes no attempt row: the completed run row already holds its
        number, worker, start and end (`attempts()` shows it), as River and Oban keep only
        errors beside the job. That is one write fewer for the common case."""
        if not items:
            return []
        if conn is None:
            with self.db.transaction() as tx:
                return self.finish_many(items, tx)
        # canceled frees its key (dedup_key), so only completed runs take the lean statement
        lean = [f for f in items if f.status == RunStatus.COMPLETED]
        full = [f for f in items if f.status != RunStatus.COMPLETED]
        written: set[str] = set()
        for group, is_lean in ((lean, True), (full, False)):
            if group:
                written.update(self._finish_group(conn, group, is_lean))
        self._insert_attempts(
            conn,
            [
                (
                    f.run.id,
                    f.run.attempt,
                    f.worker,
                    f.started_at,
                    f.now,
                    f.outcome,
                    storable(f.error),
                    storable(f.traceback),
                    None if f.started_at is None else f.now - f.started_at,
                )
                for f in items
                if f.run.id in written and f.outcome != "succeeded"
            ],
        )
        follow_ups = [f.follow_up for f in items if f.follow_up is not None and f.run.id in written]
        if follow_ups:
            self.enqueue(conn, follow_ups, items[0].now)
        return [f.run.id in written for f in items]

    def _finish_group(self, conn, items: list[Finish], lean: bool) -> set[str]:
        if self.dialect == "sqlite" and len(items) == 1:  # the common turn at concurrency 1
            params = {"now": items[0].now, **self._finish_params(items, False)}
            written = conn.execute(finish_one(lean), params).rowcount == 1
            return {items[0].run.id} if written else set()
        return {row[0] for row in conn.execute(*self._finish_statement(items, lean))}

    def _finish_statement(self, items: list[Finish], lean: bool) -> tuple[str, dict[str, Any]]:
        by_column = finishes_by_column(self.dialect, len(items))
        params = {"now": items[0].now, **self._finish_params(items, by_column)}
        return self._prepare(finish_batch(len(items), lean, self.dialect)), params

    @staticmethod
    def _finish_params(items: list[Finish], by_column: bool) -> dict[str, Any]:
        """The outcomes as `finish_batch` and `turn_postgresql` take them (see `by_column`)."""
        rows = [
            (
                f.run.id,
                f.run.lease_epoch,
                str(f.status),
                f.result,
                storable(f.error),
                f.retry_at,
                f.now if f.status in TERMINAL else None,
                int(f.crashed),
            )
            for f in items
        ]
        if by_column:
            return dict(zip(FINISH_COLUMN_NAMES, (list(column) for column in zip(*rows))))
        return {
            f"{name}_{i}": value
            for i, row in enumerate(rows)
            for name, value in zip(FINISH_COLUMN_NAMES, row)
        }

    def _insert_attempts(self, conn, rows: list[tuple]) -> None:
        if not rows:
            return
        params = {
            f"{column}_{i}": value
            for i, row in enumerate(rows)
            for column, value in zip(ATTEMPT_COLUMNS, row)
        }
        conn.execute(self._prepare(insert_attempts(len(rows))), params)

    def rescue(
        self,
        now: int,
        max_crashes: int = DEFAULT_MAX_CRASHES,
        follow_up: Callable[[Rescued], NewRun | None] | None = None,
        worker: str = "",
        in_flight: Collection[str] | None = None,
    ) -> list[Rescued]:
        """Expired leases become retrying/failed/canceled; their attempts are recorded `crashed`
        and count against `max_crashes`, not against the run's attempts. `follow_up` may name a
        run to insert in the same transaction for each rescued run (a failure hook). Runs of
        `worker` (the caller's own) are left alone, or, given `in_flight` (the ids of the runs it
        is running), only those: it renews their leases, while one of its runs it no longer
        runs — an outcome it could not write, a claim whose commit's answer was lost — would
        otherwise wait for another worker, or for ever where it is the only one."""
        error = "worker lost its lease (crashed or stalled)"
        params = {"now": now, "max_crashes": max_crashes, "worker": worker}
        with self.db.transaction() as conn:
            rows = [Rescued(*r) for r in conn.execute(self.sql["rescue"], params).fetchall()]
            if worker and in_flight is not None:
                keep = set(in_flight)
                for run_id, epoch in conn.execute(self.sql["own_expired"], params).fetchall():
                    if run_id not in keep:
                        one = {**params, "id": run_id, "epoch": epoch}
                        rows += [Rescued(*r) for r in conn.execute(self.sql["rescue_one"], one)]
            self._crashed(conn, rows, now, error, follow_up)
        return rows

    def give_back(
        self,
        runs: Collection[tuple[str, int]],
        worker: str,
        now: int,
        error: str,
        due: int,
        max_crashes: int = DEFAULT_MAX_CRASHES,
        follow_up: Callable[[Rescued], NewRun | None] | None = None,
    ) -> list[Rescued]:
        """The worker's own `(id, lease_epoch)` runs it stops running, ended as a rescue ends an
        expired lease (attempt `crashed`), now rather than a lease later; due again at `due`."""
        params = {
            "now": now,
            "due": due,
            "max_crashes": max_crashes,
            "worker": worker,
            "error": error,
        }
        with self.db.transaction() as conn:
            rows = [
                Rescued(*r)
                for run_id, epoch in runs
                for r in conn.execute(
                    self.sql["give_back_one"], {**params, "id": run_id, "epoch": epoch}
                )
            ]
            self._crashed(conn, rows, now, error, follow_up)
        return rows

    def _crashed(self, conn, rows: list[Rescued], now: int, error: str, follow_up) -> None:
        """The `crashed` attempts of rescued runs, and the runs `follow_up` names for them."""
        self._insert_attempts(
            conn,
            [
                (
                    r.id,
                    r.attempt,
                    r.worker,
                    r.attempt_started_at,
                    now,
                    AttemptOutcome.CRASHED,
                    error,
                    None,
                    None if r.attempt_started_at is None else now - r.attempt_started_at,
                )
                for r in rows
            ],
        )
        extra = [run for run in map(follow_up, rows) if run is not None] if follow_up else []
        if extra:
            self.enqueue(conn, extra, now)

    # -- operator actions ----------------------------------------------------------------
    def cancel(self, run_id: str, now: int) -> str:
        """'canceled'; 'requested' (executing: its worker stops it); 'abandoned' (executing,
        but its lease expired: no worker heartbeats it, so it is ended now, as the rescuer would
        end it, canceled); 'missing'; or 'already <status>' when the run had ended."""
        with self.db.transaction() as conn:
            if conn.execute(self.sql["cancel_pending"], {"id": run_id, "now": now}).fetchone():
                return RunStatus.CANCELED
            if conn.execute(self.sql["request_cancel"], {"id": run_id, "now": now}).fetchone():
                [(epoch,)] = conn.execute(self.sql["lease_epoch"], {"id": run_id}).fetchall()
                params = {"id": run_id, "epoch": epoch, "now": now, "max_crashes": 1}
                rows = [Rescued(*r) for r in conn.execute(self.sql["rescue_one"], params)]
                if rows:  # its worker died or stopped (`kill -9`, a shutdown timeout)
                    self._crashed(
                        conn, rows, now, "worker lost its lease (crashed or stalled)", None
                    )
                    return "abandoned"
                return "requested"
        status = self.run_status(run_id)
        return f"already {status}" if status else "missing"

    def withdraw(self, conn, task: str, key_prefix: str, now: int, reason: str) -> list[str]:
        """Cancel, in the caller's transaction, the runs of `task` not yet started whose
        idempotency keys start with `key_prefix` (their error: `reason`), freeing their keys
        for the runs that replace them; their ids."""
        if not key_prefix or not key_prefix[-1].isascii():
            raise ValueError("withdraw needs a key prefix that ends in an ASCII character")
        high = key_prefix[:-1] + chr(ord(key_prefix[-1]) + 1)  # the first string past them
        params = {"task": task, "low": key_prefix, "high": high, "now": now, "reason": reason}
        return [r[0] for r in conn.execute(self.sql["withdraw_pending"], params).fetchall()]

    def run_now(self, conn, run_id: str, now: int) -> bool:
        """Make a waiting run due now, in the caller's transaction; whether it was waiting."""
        return conn.execute(self.sql["run_now"], {"id": run_id, "now": now}).fetchone() is not None

    def log_in(self, conn, run_id: str, at: int, message: str) -> None:
        """One info line in the run's log (attempt 0: before any attempt), in the caller's transaction."""
        conn.execute(
            self.sql["insert_log"],
            {
                "run_id": run_id,
                "attempt": 0,
                "at": at,
                "level": "info",
                "message": storable(message),
            },
        )

    def add_log(self, run_id: str, attempt: int, at: int, level: str, message: str) -> None:
        self.add_logs([(run_id, attempt, at, level, message)])

    def add_logs(self, lines) -> None:
        """Log lines `(run_id, attempt, at, level, message)`, in one transaction."""
        with self.db.transaction() as conn:
            for run_id, attempt, at, level, message in lines:
                conn.execute(
                    self.sql["insert_log"],
                    {
                        "run_id": run_id,
                        "attempt": attempt,
                        "at": at,
                        "level": level,
                        "message": storable(message),
                    },
                )

    # -- schedules -----------------------------------------------------------------------
    def schedule_states(self) -> dict[str, dict]:
        return {r["id"]: r for r in self._dicts(self.sql["schedule_states"], {})}

    def set_schedule_enabled(
        self, schedule_id: str, enabled: bool, first_slot: int, now: int
    ) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                self.sql["schedule_insert"],
                {"id": schedule_id, "last_slot": first_slot, "now": now},
            )
            conn.execute(
                self.sql["schedule_set_enabled"],
                {"id": schedule_id, "enabled": int(enabled), "now": now},
            )

    def schedule_runs(self, task: str, schedule_id: str) -> list[dict]:
        """Runs keyed `<schedule id>:…` (slot runs and manual runs)."""
        prefix = schedule_id + ":"
        return self._dicts(
            self.sql["schedule_runs"], {"task": task, "low": prefix, "high": schedule_id + ";"}
        )

    # -- retention -----------------------------------------------------------------------
    def prune(self, now: int, completed_before: int, failed_before: int, limit: int = 1000) -> int:
        """Delete finished runs (with their attempts and logs) past retention; keep live keys."""
        with self.db.transaction() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    self.sql["prunable"],
                    {
                        "now": now,
                        "completed_before": completed_before,
                        "failed_before": failed_before,
                        "cutoff": max(completed_before, failed_before),
                        "limit": limit,
                    },
                ).fetchall()
            ]
            if ids:
                marks = ", ".join(f":id_{i}" for i in range(len(ids)))
                params = {f"id_{i}": v for i, v in enumerate(ids)}
                for table, column in (
                    ("flowjobs_attempts", "run_id"),
                    ("flowjobs_logs", "run_id"),
                    ("flowjobs_runs", "id"),
                ):
                    conn.execute(
                        self._prepare(f"DELETE FROM {table} WHERE {column} IN ({marks})"), params
                    )
        return len(ids)

    # -- reads -------------------------------------------------------------------------
    def _one(self, sql: str, params: dict):
        with self.db.borrow() as conn:
            return conn.execute(sql, params).fetchone()

    def _dicts(self, sql: str, params: dict) -> list[dict]:
        with self.db.borrow() as conn:
            cur = conn.execute(self._prepare(sql), params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def get_run(self, run_id: str) -> dict | None:
        rows = self._dicts("SELECT * FROM flowjobs_runs WHERE id = :id", {"id": run_id})
        return rows[0] if rows else None

    def run_status(self, run_id: str) -> str | None:
        row = self._one(
            self._prepare("SELECT status FROM flowjobs_runs WHERE id = :id"), {"id": run_id}
        )
        return row[0] if row else None

    def list_runs(
        self,
        status: str | None = None,
        task: str | None = None,
        limit: int = 50,
        parent_id: str | None = None,
        since: int | None = None,
        offset: int = 0,
        replayed: bool | None = None,
    ) -> list[dict]:
        """Newest first; `since` (epoch ms) keeps runs created at or after it; `replayed`: only
        runs that have a replay (True) or have none (False)."""
        clause, params = _run_filter(status, task, parent_id, since, replayed)
        return self._dicts(
            f"SELECT * FROM flowjobs_runs {clause} ORDER BY created_at DESC, id DESC "
            "LIMIT :limit OFFSET :offset",
            {**params, "limit": limit, "offset": offset},
        )

    def count_runs(
        self, status: str | None = None, task: str | None = None, replayed: bool | None = None
    ) -> int:
        """How many runs `list_runs` would find with these filters and no limit."""
        clause, params = _run_filter(status, task, None, None, replayed)
        return self._one(self._prepare(f"SELECT count(*) FROM flowjobs_runs {clause}"), params)[0]

    def replays(self, run_ids: list[str]) -> dict[str, list[str]]:
        """The replays of each of `run_ids` that has any (`runs replay`), oldest first."""
        found: dict[str, list[str]] = {}
        for original, replay in self._all(self.sql["replays"], {"ids": self._list(run_ids)}):
            found.setdefault(original, []).append(replay)
        return found

    def attempts(self, run_id: str) -> list[dict]:
        """Every attempt, oldest first: the recorded rows, then a completed run's succeeded
        attempt, which lives in the run row (see `finish_many`)."""
        rows = self._dicts(
            "SELECT * FROM flowjobs_attempts WHERE run_id = :id ORDER BY number", {"id": run_id}
        )
        run = self.get_run(run_id)
        if (
            run
            and run["status"] == RunStatus.COMPLETED
            and all(r["number"] != run["attempt"] for r in rows)
        ):
            rows.append(succeeded_attempt(run))
        return rows

    def logs(self, run_id: str) -> list[dict]:
        return self._dicts(
            "SELECT attempt, at, level, message FROM flowjobs_logs WHERE run_id = :id ORDER BY id",
            {"id": run_id},
        )

    def queue_depths(self, now: int) -> list[tuple[str, int, int, float]]:
        """(queue, runs due now and waiting, runs executing, seconds the oldest due run has waited)."""
        rows = self._all(self.sql["queue_depths"], {"now": int(now)})
        return [
            (q, int(due or 0), int(running or 0), (now - oldest) / 1000 if oldest else 0.0)
            for q, due, running, oldest in rows
        ]

    def count_by_status(self) -> dict[str, int]:
        return {status: count for status, count in self._all(self.sql["count_by_status"], {})}

    def count_by_task_status(self) -> list[tuple[str, str, int]]:
        return [tuple(row) for row in self._all(self.sql["count_by_task_status"], {})]

    def count_inbox(self) -> list[tuple[str, str, int]]:
        """(source, status, events) of the webhook inbox."""
        return [tuple(row) for row in self._all(self.sql["count_inbox"], {})]

    def failed_since(self, since: int, exclude_task: str, limit: int = 100) -> list[tuple]:
        """(id, task, error, attempt) of runs that failed for good after `since`, oldest first."""
        return self._all(
            self.sql["failed_since"], {"since": since, "exclude_task": exclude_task, "limit": limit}
        )

    def oldest_due(self, due_before: int) -> tuple | None:
        """(id, task, queue, status, run_at) of the longest-waiting run due at `due_before` or
        earlier."""
        rows = self._all(self.sql["oldest_due"], {"due_before": due_before})
        return tuple(rows[0]) if rows else None

    def upcoming(self, now: int, limit: int) -> list[tuple]:
        """(id, task, queue, status, run_at) of the `limit` runs waiting for the soonest future
        times: the soonest of each waiting priority (one index seek each; a round trip each, so
        meant for a few priorities), merged. At the same time, the lower priority number first,
        then the database's order of ids (as `oldest_due`)."""
        with self.db.borrow() as conn:
            found = [
                tuple(row)
                for (priority,) in conn.execute(self.sql["waiting_priorities"], {}).fetchall()
                for row in conn.execute(
                    self.sql["upcoming_at_priority"],
                    {"priority": priority, "now": now, "limit": limit},
                ).fetchall()
            ]
        return sorted(found, key=lambda row: row[4])[:limit]  # stable: priority order kept

    def expired_leases(self, now: int) -> tuple[int, int | None]:
        """(runs executing past their lease, the earliest such lease end)."""
        count, earliest = self._all(self.sql["expired_leases"], {"now": now})[0]
        return int(count or 0), earliest

    def attempt_durations(self, bounds_ms: tuple[float, ...]) -> list[tuple]:
        """(task, outcome, count, total ms, cumulative count at each bound) per task and outcome."""
        return self._all(self._prepare(attempt_durations_sql(bounds_ms)), {})

    def window_runs(self, params: dict, conn=None) -> list[tuple]:
        """A schedule's runs in a key range with their children's fate (see queries)."""
        if conn is not None:
            return conn.execute(self.sql["window_runs"], params).fetchall()
        return self._all(self.sql["window_runs"], params)

    # -- workers -------------------------------------------------------------------------
    def register_worker(self, worker: dict, now: int) -> None:
        """Record a starting worker: `worker` has id, host, pid, version, queues, concurrency."""
        with self.db.transaction() as conn:
            conn.execute(self.sql["worker_register"], {**worker, "now": now})

    def worker_heartbeat(self, worker_id: str, now: int, in_flight: int, processed: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                self.sql["worker_heartbeat"],
                {"id": worker_id, "now": now, "in_flight": in_flight, "processed": processed},
            )

    def worker_stopped(self, worker_id: str, now: int, processed: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                self.sql["worker_stopped"], {"id": worker_id, "now": now, "processed": processed}
            )

    def workers(self, since: int) -> list[dict]:
        """Workers seen (heartbeat) since `since`, newest first."""
        return self._dicts(self.sql["workers_since"], {"since": since})

    def prune_rejected(self, before: int, limit: int = 500) -> int:
        """Delete up to `limit` refused webhook requests received before `before` (epoch ms);
        how many. The inbox's times are the billing tables' timestamps: a timestamptz on
        PostgreSQL, SQLAlchemy's "YYYY-MM-DD HH:MM:SS.ffffff" UTC text on SQLite."""
        moment = datetime.fromtimestamp(before / 1000, UTC)
        value: object = (
            moment.replace(tzinfo=None).isoformat(" ", "microseconds")
            if self.dialect == "sqlite"
            else moment
        )
        with self.db.transaction() as conn:
            params = {"before": value, "limit": limit}
            return conn.execute(self.sql["prune_rejected"], params).rowcount

    def prune_workers(self, before: int) -> int:
        with self.db.transaction() as conn:
            return conn.execute(self.sql["workers_prune"], {"before": before}).rowcount

    # -- wake-ups ------------------------------------------------------------------------
    def listen_for_work(self, wake, stopping):
        """A `Listener` whose `wait(seconds)` returns when `wake` is set, new work may have
        arrived (PostgreSQL NOTIFY, a write to the SQLite WAL) or `seconds` passed; close it
        when done (`stopping` ends PostgreSQL's listening thread)."""
        return self._wakeups.listen(wake, stopping)

    def _all(self, sql: str, params: dict) -> list:
        with self.db.borrow() as conn:
            return conn.execute(sql, params).fetchall()


def _run_filter(status, task, parent_id, since, replayed) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (and its parameters) of `list_runs` and `count_runs`."""
    where: list[str] = []
    params: dict[str, Any] = {}
    for column, value in (("status", status), ("task", task), ("parent_id", parent_id)):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if since is not None:
        where.append("created_at >= :since")
        params["since"] = since
    if replayed is not None:
        where.append(
            ("" if replayed else "NOT ")
            + "EXISTS (SELECT 1 FROM flowjobs_runs p WHERE p.replay_of = flowjobs_runs.id)"
        )
    return ("WHERE " + " AND ".join(where)) if where else "", params


def succeeded_attempt(run: dict) -> dict:
    """The attempt row a completed run stands for."""
    started, finished = run["attempt_started_at"], run["finished_at"]
    return {
        "run_id": run["id"],
        "number": run["attempt"],
        "worker": run["worker"],
        "started_at": started,
        "finished_at": finished,
        "outcome": "succeeded",
        "error": None,
        "traceback": None,
        "duration_ms": None if started is None or finished is None else finished - started,
    }


def _run_rows(runs: list[NewRun], now: int) -> list[tuple]:
    """New runs as rows of `queries.RUN_COLUMNS` (the dedup key is the idempotency key)."""
    return [
        (
            run.id,
            run.task,
            run.queue,
            _DELAYED_TEXT if run.run_at > now else _QUEUED_TEXT,
            run.payload,
            run.priority,
            0,
            run.max_attempts,
            run.run_at,
            now,
            now,
            run.idempotency_key,
            run.idempotency_key,
            run.idempotency_expires_at,
            run.payload_hash,
            run.parent_id,
            run.replay_of,
        )
        for run in runs
    ]


def _by_column(rows: list[tuple]) -> tuple[tuple[str, ...], list[Any]]:
    """Rows of RUN_COLUMNS as `queries.insert_runs_by_column` takes them: the names of the
    columns whose value is the same in every row (never the id), and the parameters."""
    columns = list(zip(*rows))
    shared = tuple(
        name
        for name, column in zip(RUN_COLUMN_NAMES, columns)
        if name != "id" and column.count(column[0]) == len(column)
    )
    params: list[Any] = [c[0] for name, c in zip(RUN_COLUMN_NAMES, columns) if name in shared]
    params += [list(c) for name, c in zip(RUN_COLUMN_NAMES, columns) if name not in shared]
    return shared, params


def _run_values(runs: list[NewRun], now: int) -> list[Any]:
    """`_run_rows` flattened: the positional parameters of a multi-row VALUES list."""
    return [value for row in _run_rows(runs, now) for value in row]


@lru_cache(maxsize=1024)
def _pyformat(sql: str) -> str:
    return to_pyformat(sql)


def _lock_key(queue: str) -> int:
    return zlib.crc32(("flowjobs:queue:" + queue).encode())
