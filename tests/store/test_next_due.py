"""When is the next run due? Asked of the claim index (revision 0012 dropped the index on
run_at alone): an idle worker's `any_due` and `next_due`, the waiting-run alert's and the
dashboard's `oldest_due`, the dashboard's `upcoming`. On both backends: the answers equal a
brute-force reading of every run, at several priorities, and the reads stay a few index seeks
per priority however many runs wait (counted — SQLite virtual-machine steps, PostgreSQL pages
touched — not timed)."""

from __future__ import annotations

import json

import pytest

from flowjobs.core.client import TriggerItem
from flowjobs.store.states import PENDING

HOUR = 3_600_000


def waiting_rows(rt) -> list[tuple]:
    """Every waiting run as (id, task, queue, status, run_at), soonest first (at the same time,
    lower priority number first, then by id in the database's collation), read without the
    store's SQL."""
    statuses = ", ".join(f"'{s}'" for s in PENDING)
    with rt.db.borrow() as conn:
        rows = conn.execute(
            "SELECT id, task, queue, status, run_at FROM flowjobs_runs "
            f"WHERE status IN ({statuses}) ORDER BY run_at, priority, id"
        ).fetchall()
    return [tuple(r) for r in rows]


def any_due(rt, now: int) -> bool:
    return bool(rt.store._one(rt.store.sql["any_due"], {"now": now}))


def test_next_due_oldest_due_and_upcoming_read_every_priority(make_runtime, clock):
    rt = make_runtime()
    now = clock.now_ms()
    assert rt.store.next_due() is None and not any_due(rt, now)
    assert rt.store.oldest_due(now) is None and rt.store.upcoming(now, 5) == []

    # priority 0: only future runs; priority 3: one due run behind them; priority -2: later still
    rt.client.batch_trigger(
        [TriggerItem("noop", delay=f"{i + 1}h") for i in range(6)]
        + [TriggerItem("noop", run_at=now + 30 * HOUR, priority=-2)]
    )
    assert not any_due(rt, now) and rt.store.oldest_due(now) is None
    assert rt.store.next_due() == now + HOUR
    due = rt.trigger("noop", priority=3, queue="other")
    clock.advance(5)
    # finished and executing runs are not waiting, whatever their run_at
    done = rt.trigger("noop", priority=1)
    assert rt.store.claim("w", 1, ["*"], {}, clock.now_ms(), 30_000)[0].id == done.id
    now = clock.now_ms()

    rows = waiting_rows(rt)
    due_at = rt.store.get_run(due.id)["run_at"]
    assert any_due(rt, now) and rt.store.next_due() == rows[0][4] == due_at == now - 5_000
    assert rt.store.oldest_due(now) == rows[0] == (due.id, "noop", "other", "queued", due_at)
    assert rt.store.oldest_due(now - 10_000) is None  # due 5 s ago: not waiting 10 s yet
    future = [r for r in rows if r[4] > now]
    assert rt.store.upcoming(now, 4) == future[:4]
    assert rt.store.upcoming(now, 50) == future and future[-1][4] == now - 5_000 + 30 * HOUR


BACKLOG = 40_000


@pytest.fixture
def deep_backlog(make_runtime, clock):
    """40,000 runs delayed by a day at priority 0 (all due at the same time), 2 at priority 7,
    and one due run at 5: a read walking the claim index in order would pass every delayed run
    before the due one."""
    rt = make_runtime()
    later = clock.now_ms() + 86_400_000
    with rt.db.transaction() as conn:  # 40,000 rows in one statement, on either backend
        conn.execute(
            f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {BACKLOG})
                INSERT INTO flowjobs_runs (id, task, queue, status, payload, priority, attempt,
                    max_attempts, run_at, created_at, updated_at, lease_epoch,
                    cancel_requested, payload_hash, crashes)
                SELECT 'run_later' || i, 'noop', 'default', 'delayed', '{{}}', 0, 0, 3,
                    {later}, {later}, {later}, 0, 0, 'h', 0 FROM n"""
        )
    rt.client.batch_trigger([TriggerItem("noop", priority=7, delay="2d") for _ in range(2)])
    due = rt.trigger("noop", priority=5)
    if rt.db.dialect == "postgresql":
        with rt.db.borrow() as conn:
            conn.execute("ANALYZE flowjobs_runs")
    return rt, rt.store.get_run(due.id), clock.now_ms()


def read_cost(rt, sql: str, params: dict) -> tuple[list, int]:
    """(rows, what reading them cost): SQLite virtual-machine steps; PostgreSQL buffers (pages)
    the plan touched, from EXPLAIN (ANALYZE, BUFFERS)."""
    if rt.db.dialect == "sqlite":
        steps = [0]

        def count():
            steps[0] += 1
            return 0

        with rt.db.borrow() as conn:
            conn.set_progress_handler(count, 1)
            try:
                rows = conn.execute(sql, params).fetchall()
            finally:
                conn.set_progress_handler(None, 1)
        return rows, steps[0]
    with rt.db.borrow() as conn:
        rows = conn.execute(sql, params).fetchall()
        plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params).fetchone()
    top = (json.loads(plan[0]) if isinstance(plan[0], str) else plan[0])[0]["Plan"]
    return rows, top["Shared Hit Blocks"] + top["Shared Read Blocks"]  # children included


@pytest.mark.parametrize("name", ["any_due", "next_due", "oldest_due", "waiting_priorities"])
def test_the_reads_seek_each_priority_instead_of_walking_the_backlog(deep_backlog, name):
    rt, due, now = deep_backlog
    sql = rt.store.sql[name]
    params = {k: now for k in ("now", "due_before") if f":{k}" in sql or f"%({k})s" in sql}
    rows, cost = read_cost(rt, sql, params)
    expected = {
        "any_due": [(1,)],
        "next_due": [(due["run_at"],)],
        "oldest_due": [(due["id"], "noop", "default", "queued", due["run_at"])],
        "waiting_priorities": [(0,), (5,), (7,)],
    }[name]
    assert [tuple(r) for r in rows] == expected
    # walking the backlog (the old statements without their index) cost 160,000-280,000
    # steps on SQLite and 656 pages on PostgreSQL; seeking costs a few a priority (measured:
    # 114-307 steps, 15-34 pages)
    assert cost < (2_000 if rt.db.dialect == "sqlite" else 200), cost


def test_upcoming_merges_the_soonest_of_each_priority(deep_backlog):
    rt, due, now = deep_backlog
    rows = waiting_rows(rt)
    future = [r for r in rows if r[4] > now]
    assert rt.store.upcoming(now, 3) == future[:3] and due["id"] not in [r[0] for r in future]
