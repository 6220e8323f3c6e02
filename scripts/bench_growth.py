"""`make bench-growth`: cost as work grows (issue #17). JSON lines, then a markdown summary.

1. `table` (SQLite, PostgreSQL): enqueue (one by one; batch_trigger of 500) and drain (run-worker
   --burst, 1 process x concurrency 10 and x 1) of the same N noop runs on (a) an empty table and
   (b) one holding BENCH_GROWTH_ROWS (1,000,000) completed runs filled with SQL, interleaved
   a, b, a, b so both see the same machine; ratio (b)/(a). The query plans of claim, any_due,
   next_due, finish and prunable on (b).
2. `queued`: BENCH_GROWTH_QUEUED (200,000) runs queued at once; the drain rate over the first
   and the last 20,000.
3. `pruner` (SQLite): BENCH_GROWTH_ROWS runs past retention; a worker drains N noop runs
   without and then with `prune_once` running beside it; the pruner's deletion rate, its
   write-transaction hold times (max, p99) and the longest gap between two completed runs.
4. `curve` (PostgreSQL): drain of BENCH_GROWTH_CURVE_RUNS (20,000) noop runs with 1, 2, 4, 8
   processes x 10 threads.
5. `vacuum` (PostgreSQL, not in the default set: ~4 minutes): on a table of BENCH_GROWTH_ROWS
   finished runs, BENCH_GROWTH_VACUUM_RUNS (100,000) queued runs drained at concurrency 1, the
   rate by tenth of the drain, with revision 0016's storage parameters and with PostgreSQL's
   defaults (the dead entries of claimed runs at the head of the waiting index; docs/operations.md,
   "Vacuum").
BENCH_GROWTH_ONLY="table,queued,pruner,curve,vacuum" (any subset) and BENCH_GROWTH_BACKENDS
("sqlite,postgresql") pick parts; BENCH_GROWTH_ROUNDS (2) the interleaved rounds of `table`
(from 3 on, medians instead of means). Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench  # the PostgreSQL server, fresh databases and runtimes of `make bench`

from flowjobs import ids
from flowjobs.core.client import TriggerItem
from flowjobs.core.duties import prune_once
from flowjobs.store import queries

ROWS = int(os.environ.get("BENCH_GROWTH_ROWS", "1000000"))
N = int(os.environ.get("BENCH_GROWTH_RUNS", "5000"))
QUEUED = int(os.environ.get("BENCH_GROWTH_QUEUED", "200000"))
CURVE_RUNS = int(os.environ.get("BENCH_GROWTH_CURVE_RUNS", "20000"))
ROUNDS = max(1, int(os.environ.get("BENCH_GROWTH_ROUNDS", "2")))  # empty, big, empty, big …
VACUUM_RUNS = int(os.environ.get("BENCH_GROWTH_VACUUM_RUNS", "100000"))
ONE_BY_ONE = 1000
DAY_MS = 86_400_000
PAYLOAD_HASH = hashlib.sha256(b"{}").hexdigest()
SUMMARY: list[tuple[str, str, str]] = []  # (case, backend, result) for the markdown table
# a worker that never prunes (the baseline of the pruner case; the filled rows of `table`
# are within retention anyway)
NO_PRUNE = {"FLOWJOBS_RETENTION_COMPLETED": "3650d", "FLOWJOBS_RETENTION_FAILED": "3650d"}


def done(rt) -> None:
    """Close a runtime and remove its SQLite files (1M rows are ~400 MB)."""
    rt.close()
    if rt.db.dialect == "sqlite" and rt.db.path != ":memory:":
        shutil.rmtree(Path(rt.db.path).parent, ignore_errors=True)


def emit(**fields) -> None:
    bench.emit(**fields)


def now_ms() -> int:
    return int(time.time() * 1000)


# -- filling ---------------------------------------------------------------------------------
_COLUMNS = (
    "id, task, queue, status, payload, priority, attempt, max_attempts, run_at, created_at, "
    "updated_at, started_at, finished_at, attempt_started_at, lease_epoch, worker, payload_hash"
)
_VALUES = (
    "{id}, 'noop', 'default', 'completed', '{{}}', 0, 1, 3, f - 40, f - 40, f, f - 20, f, f - 20, 1, "
    "'wrk_bench', '" + PAYLOAD_HASH + "'"
)


def _stamp(column: str) -> str:
    """SQL for `flowjobs.ids.new_sortable_id`'s first 8 characters: `column` (ms) in base 62."""
    return " || ".join(
        f"substr('{ids.ALPHABET}', CAST(({column} / {62**k}) % 62 AS INTEGER) + 1, 1)"
        for k in reversed(range(ids.STAMP))
    )


def fill(rt, rows: int, newest: int, span_ms: int) -> float:
    """`rows` completed runs finished between `newest - span_ms` and `newest`, in one SQL
    statement, with time-sortable ids as `trigger` makes them; returns the seconds it took."""
    start = time.perf_counter()
    if rt.db.dialect == "sqlite":
        sql = (
            f"WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < {rows - 1}) "
            f"INSERT INTO flowjobs_runs ({_COLUMNS}) SELECT "
            + _VALUES.format(
                id=f"'run_' || {_stamp('(f - 40)')} || substr(hex(randomblob(7)), 1, 13)"
            )
            + f" FROM (SELECT {newest} - i * {span_ms} / {max(rows, 1)} AS f FROM c)"
        )
        with rt.db.transaction() as conn:
            conn.execute(sql)
    else:
        sql = (
            f"INSERT INTO flowjobs_runs ({_COLUMNS}) SELECT "
            + _VALUES.format(
                id=f"'run_' || {_stamp('(f - 40)')} || substr(md5(random()::text), 1, 13)"
            )
            + f" FROM (SELECT {newest}::bigint - i * {span_ms}::bigint / {max(rows, 1)} AS f "
            f"FROM generate_series(0, {rows - 1}) i) s"
        )
        with rt.db.transaction() as conn:
            conn.execute(sql)
        with rt.db.borrow() as conn:
            conn.execute("VACUUM ANALYZE flowjobs_runs")  # what autovacuum would do soon after
    return time.perf_counter() - start


# -- enqueue and drain ---------------------------------------------------------------------
def enqueue(rt, runs: int) -> dict:
    start = time.perf_counter()
    for _ in range(ONE_BY_ONE):
        rt.trigger("noop")
    one = ONE_BY_ONE / (time.perf_counter() - start)
    start = time.perf_counter()
    batch_trigger(rt, runs)
    batch = runs / (time.perf_counter() - start)
    return {"enqueue_one_per_s": round(one), "enqueue_batch500_per_s": round(batch)}


def batch_trigger(rt, runs: int) -> None:
    for done in range(0, runs, 500):
        rt.client.batch_trigger([TriggerItem("noop") for _ in range(min(500, runs - done))])


def burst(
    url: str, concurrency: int, processes: int = 1, env: dict | None = None
) -> tuple[int, float]:
    """Drain what is queued; returns (ms when the worker was started, wall seconds)."""
    began, start = now_ms(), time.perf_counter()
    bench.burst_worker(url, processes, concurrency, {**NO_PRUNE, **(env or {})})
    return began, time.perf_counter() - start


def finished_since(rt, began: int) -> list[tuple[int, int]]:
    """(started_at, finished_at) of the runs completed by a worker started at `began`."""
    with rt.db.borrow() as conn:
        sql = "SELECT started_at, finished_at FROM flowjobs_runs WHERE status = 'completed' AND started_at >= "
        return conn.execute(sql + str(began) + " ORDER BY finished_at").fetchall()


def drain_rate(rows: list[tuple[int, int]]) -> float:
    first = min(r[0] for r in rows)
    return len(rows) / max((rows[-1][1] - first) / 1000, 0.001)


# -- query plans -----------------------------------------------------------------------------
_TEXT = {"id", "status", "result", "error", "worker", "queue", "task", "key"}


def _params(sql: str, style: str) -> dict:
    names = set(re.findall(r"%\((\w+)\)s" if style == "pyformat" else r"(?<![:\w]):(\w+)", sql))
    values: dict = {}
    for name in names:
        base = re.sub(r"_\d+$", "", name)
        values[name] = "completed" if base == "status" else "x" if base in _TEXT else 1
    now = now_ms()  # the pruner's cutoffs at the default retention (7 days completed, 30 failed)
    times = {
        "now": now,
        "cutoff": now - 7 * DAY_MS,
        "completed_before": now - 7 * DAY_MS,
        "failed_before": now - 30 * DAY_MS,
    }
    values.update({k: v for k, v in times.items() if k in names})
    return values


def plans(rt, backend: str) -> None:
    """EXPLAIN the hot statements on the big table; flag any full scan of flowjobs_runs."""
    cat = queries.catalogue(backend)
    finish = queries.finish_batch(10, lean=True)
    statements = {
        "claim": queries.claim(backend, False, False),
        "any_due": cat["any_due"],
        "next_due": cat["next_due"],
        "finish(10, lean)": finish if backend == "sqlite" else queries.to_pyformat(finish),
        "prunable": cat["prunable"],
    }
    for name, sql in statements.items():
        if backend == "sqlite":
            with rt.db.borrow() as conn:
                rows = conn.execute("EXPLAIN QUERY PLAN " + sql, _params(sql, "named")).fetchall()
            plan = [r[3] for r in rows]
            scans = [p for p in plan if p.startswith("SCAN flowjobs_runs") and "USING" not in p]
        else:
            import psycopg

            with psycopg.connect(rt.db.conninfo) as conn, psycopg.ClientCursor(conn) as cur:
                cur.execute("EXPLAIN " + sql, _params(sql, "pyformat"))
                plan = [r[0] for r in cur.fetchall()]
                conn.rollback()
            scans = [p.strip() for p in plan if "Seq Scan on flowjobs_runs" in p]
        emit(backend=backend, case="plan", statement=name, full_scan=bool(scans), plan=plan)
        if scans:
            SUMMARY.append(("plan: full scan", backend, f"{name}: {scans[0]}"))


# -- 1. empty vs big table -------------------------------------------------------------------
def table(backend: str, pg: str | None) -> None:
    urls = {
        "empty": bench.fresh(backend, pg, "growth_empty"),
        "big": bench.fresh(backend, pg, "growth_big"),
    }
    rts = {label: bench.runtime(url) for label, url in urls.items()}
    for rt in rts.values():
        rt.store  # noqa: B018 - creates the tables
    took = fill(rts["big"], ROWS, now_ms() - 3600_000, 6 * DAY_MS)  # within the 7-day retention
    emit(backend=backend, case="fill", rows=ROWS, seconds=round(took, 1))
    plans(rts["big"], backend)
    results: dict[tuple[str, str], list[float]] = {}
    for rnd in range(ROUNDS):  # a, b, a, b: both labels see the same machine
        for label in ("empty", "big"):
            rt, url = rts[label], urls[label]
            fields = enqueue(rt, N)
            began, _ = burst(url, 10)
            c10 = drain_rate(finished_since(rt, began))
            # the ONE_BY_ONE runs of enqueue() were drained too; queue N again for concurrency 1
            batch_trigger(rt, N)
            began, _ = burst(url, 1)
            c1 = drain_rate(finished_since(rt, began))
            fields.update(drain_c10_per_s=round(c10), drain_c1_per_s=round(c1))
            emit(
                backend=backend,
                case="table",
                table=label,
                round=rnd,
                finished_rows=ROWS if label == "big" else 0,
                runs=N,
                **fields,
            )
            for key, value in fields.items():
                results.setdefault((label, key), []).append(value)
    for key in ("enqueue_one_per_s", "enqueue_batch500_per_s", "drain_c10_per_s", "drain_c1_per_s"):
        # the mean of 2 rounds; from 3 on, the median (one stalled minute does not set it)
        middle = statistics.mean if ROUNDS < 3 else statistics.median
        a, b = middle(results[("empty", key)]), middle(results[("big", key)])
        emit(
            backend=backend,
            case="table_ratio",
            measure=key,
            rounds=ROUNDS,
            of_rounds=middle.__name__,
            empty=round(a),
            big=round(b),
            ratio=round(b / a, 2),
        )
        SUMMARY.append(
            (
                f"{key} big/empty ({ROWS:,} finished rows)",
                backend,
                f"{round(b):,} / {round(a):,} = **{b / a:.2f}**",
            )
        )
    for rt in rts.values():
        done(rt)


# -- 2. many queued at once ------------------------------------------------------------------
def queued(backend: str, pg: str | None) -> None:
    url = bench.fresh(backend, pg, "growth_queued")
    rt = bench.runtime(url)
    start = time.perf_counter()
    batch_trigger(rt, QUEUED)
    enq = QUEUED / (time.perf_counter() - start)
    began, wall = burst(url, 10)
    rows = finished_since(rt, began)
    done(rt)
    k = min(20000, len(rows) // 2)
    first = k / max((rows[k - 1][1] - min(r[0] for r in rows)) / 1000, 0.001)
    last = k / max((rows[-1][1] - rows[-k - 1][1]) / 1000, 0.001)
    emit(
        backend=backend,
        case="queued",
        queued=QUEUED,
        enqueue_batch500_per_s=round(enq),
        drained=len(rows),
        first_per_s=round(first),
        last_per_s=round(last),
        overall_per_s=round(drain_rate(rows)),
        wall_s=round(wall, 1),
        window=k,
    )
    SUMMARY.append(
        (
            f"drain with {QUEUED:,} queued: first / last {k:,}",
            backend,
            f"{round(first):,} / {round(last):,} runs/s (overall {round(drain_rate(rows)):,})",
        )
    )


def vacuum(backend: str, pg: str | None) -> None:
    """PostgreSQL: a long drain at concurrency 1 on a big table, its rate by tenth, with 0016's
    storage parameters on flowjobs_runs and with them reset to PostgreSQL's defaults."""
    import importlib.util

    from flowjobs.store.migrate import MIGRATIONS

    path = MIGRATIONS / "versions" / "0016_vacuum_the_queue.py"  # its names start with a digit
    spec = importlib.util.spec_from_file_location("revision_0016", path)
    assert spec is not None and spec.loader is not None
    revision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(revision)
    for label in ("0016", "defaults"):
        url = bench.fresh(backend, pg, f"growth_vacuum_{label}")
        rt = bench.runtime(url)
        _ = rt.store  # the tables, at 0016
        if label == "defaults":
            with rt.db.borrow() as conn:
                conn.execute(
                    f"ALTER TABLE flowjobs_runs RESET ({', '.join(revision.QUEUE_VACUUM)})"
                )
        fill(rt, ROWS, now_ms() - 3600_000, 6 * DAY_MS)
        batch_trigger(rt, VACUUM_RUNS)
        began, _ = burst(url, 1)
        ends = sorted(end for _, end in finished_since(rt, began))
        with rt.db.borrow() as conn:
            dead, vacuums = conn.execute(
                "SELECT n_dead_tup, autovacuum_count FROM pg_stat_user_tables "
                "WHERE relname = 'flowjobs_runs'"
            ).fetchone()
        done(rt)
        tenth = len(ends) // 10
        rates = [
            round(tenth / max((ends[(i + 1) * tenth - 1] - ends[i * tenth]) / 1000, 0.001))
            for i in range(10)
        ]
        overall = round(len(ends) / max((ends[-1] - ends[0]) / 1000, 0.001))
        emit(
            backend=backend,
            case="vacuum",
            parameters=label,
            finished_rows=ROWS,
            drained=len(ends),
            by_tenth_per_s=rates,
            overall_per_s=overall,
            autovacuums=vacuums,
            dead_rows_at_end=dead,
        )
        SUMMARY.append(
            (
                f"drain of {VACUUM_RUNS:,} at concurrency 1 on {ROWS:,} rows, {label}, by tenth",
                backend,
                " · ".join(f"{r:,}" for r in rates) + f" (overall {overall:,}; "
                f"{vacuums} autovacuums)",
            )
        )


# -- 3. the pruner beside a worker (SQLite) ----------------------------------------------------
@contextmanager
def timed_transactions(db, holds: list[float]):
    """Record how long each write transaction of `db` holds the lock (BEGIN IMMEDIATE done to
    COMMIT done)."""
    original = db.transaction

    @contextmanager
    def transaction(conn=None):
        with original(conn) as tx:  # BEGIN (IMMEDIATE) done: the lock is held from here
            start = time.perf_counter()
            yield tx
        holds.append(time.perf_counter() - start)  # to COMMIT done

    db.transaction = transaction
    try:
        yield
    finally:
        db.transaction = original


def pruner(backend: str, pg: str | None) -> None:
    url = bench.fresh(backend, pg, "growth_prune")
    rt = bench.runtime(url)
    rt.store  # noqa: B018
    fill(rt, ROWS, now_ms() - 8 * DAY_MS, 30 * DAY_MS)  # all past the 7-day retention
    # without: a worker that does not prune drains N
    batch_trigger(rt, N)
    began, _ = burst(url, 10)
    alone = finished_since(rt, began)
    # with: prune_once (this process) deletes the ROWS while the worker drains N
    batch_trigger(rt, N)
    holds: list[float] = []
    result: dict = {}

    def prune():
        start = time.perf_counter()
        result["deleted"] = prune_once(rt.store, rt.clock, rt.settings.retention)
        result["seconds"] = time.perf_counter() - start

    with timed_transactions(rt.db, holds):
        thread = threading.Thread(target=prune)
        thread.start()
        began, _ = burst(url, 10)
        pruned_during = len(holds)  # transactions so far
        thread.join()
    beside = finished_since(rt, began)
    done(rt)
    holds_ms = sorted(h * 1000 for h in holds)

    def gap(rows):
        return max((b[1] - a[1] for a, b in itertools.pairwise(rows)), default=0)

    fields = dict(
        rows=ROWS,
        deleted=result["deleted"],
        prune_runs_per_s=round(result["deleted"] / result["seconds"]),
        transactions=len(holds),
        transactions_during_drain=pruned_during,
        hold_max_ms=round(holds_ms[-1], 1),
        hold_p99_ms=round(holds_ms[int(len(holds_ms) * 0.99)], 1),
        hold_median_ms=round(statistics.median(holds_ms), 1),
        drain_alone_per_s=round(drain_rate(alone)),
        drain_beside_pruner_per_s=round(drain_rate(beside)),
        longest_gap_alone_ms=gap(alone),
        longest_gap_beside_pruner_ms=gap(beside),
    )
    emit(backend=backend, case="pruner", **fields)
    SUMMARY.append(
        (
            f"pruner: {ROWS:,} runs past retention",
            backend,
            f"{fields['prune_runs_per_s']:,} runs/s; hold max {fields['hold_max_ms']} ms, "
            f"p99 {fields['hold_p99_ms']} ms",
        )
    )
    SUMMARY.append(
        (
            "drain alone / beside the pruner (longest gap)",
            backend,
            f"{fields['drain_alone_per_s']:,} ({fields['longest_gap_alone_ms']} ms) / "
            f"{fields['drain_beside_pruner_per_s']:,} ({fields['longest_gap_beside_pruner_ms']} ms)",
        )
    )


# -- 4. PostgreSQL processes curve ------------------------------------------------------------
def curve(backend: str, pg: str | None) -> None:
    rates = []
    for processes in (1, 2, 4, 8):
        url = bench.fresh(backend, pg, f"growth_curve{processes}")
        rt = bench.runtime(url)
        batch_trigger(rt, CURVE_RUNS)
        began, wall = burst(url, 10, processes)
        rows = finished_since(rt, began)
        done(rt)
        rates.append(round(drain_rate(rows)))
        emit(
            backend=backend,
            case="curve",
            processes=processes,
            threads=10,
            runs=len(rows),
            runs_per_s=rates[-1],
            wall_s_including_startup=round(wall, 1),
        )
    SUMMARY.append(
        (
            f"drain {CURVE_RUNS:,}: 1 / 2 / 4 / 8 processes x 10",
            backend,
            " / ".join(f"{r:,}" for r in rates) + " runs/s",
        )
    )


def main() -> None:
    parts = os.environ.get("BENCH_GROWTH_ONLY", "table,pruner,curve,queued").split(",")
    backends = os.environ.get("BENCH_GROWTH_BACKENDS", "sqlite,postgresql").split(",")
    # on disk, as the figures in docs/benchmarks.md were measured (fsync off: the ratios
    # compare an empty table with a big one in the same run)
    with bench.pg_server(in_memory=False) as pg:  # cheapest first: the 200,000 queued drain last
        for backend in backends if "table" in parts else ():
            table(backend, pg)
        if "pruner" in parts and "sqlite" in backends:
            pruner("sqlite", pg)
        if "curve" in parts and "postgresql" in backends:
            curve("postgresql", pg)
        if "vacuum" in parts and "postgresql" in backends:
            vacuum("postgresql", pg)
        for backend in backends if "queued" in parts else ():
            queued(backend, pg)
    print("\n| case | backend | result |\n|---|---|---|")
    for case, backend, result in SUMMARY:
        print(f"| {case} | {backend} | {result} |")


if __name__ == "__main__":
    main()
