"""`make bench-peers`: flowjobs beside huey (SQLite) and procrastinate (PostgreSQL) and the bare driver.

The same cases through each, interleaved in one run (each round runs every case through every
system, in a rotating order), BENCH_PEERS_ROUNDS rounds (default 3); prints one JSON line per
measurement, then the medians (and lowest–highest) as a markdown table with the ratios
flowjobs/bare driver and flowjobs/peer (the median of each round's ratio: the systems of one
round run minutes apart, and this machine's speed drifts), and one JSON line per row of it.

Cases, on SQLite (BENCH_PEERS_SQLITE_RUNS noop jobs, default 20,000) and on PostgreSQL with
stock durability (BENCH_PEERS_PG_RUNS, default 5,000):
- enqueue one by one: one job per call, one transaction each (flowjobs `trigger`, huey's task
  call, procrastinate's `defer`; the bare driver: one INSERT per transaction);
- drain at concurrency 1: the jobs just enqueued, by one worker running one job at a time
  (flowjobs `run-worker --burst --processes 1 --concurrency 1`, `huey_consumer -w 1`,
  procrastinate `concurrency=1`; the bare driver: one transaction completes a row and claims the next);
- drain at concurrency 4: a new queue (filled in batches where the system has them) drained by
  one process running 4 jobs at once (flowjobs `--concurrency 4`, huey `-w 4` threads,
  procrastinate `concurrency=4`); the bare driver's figure is its best shape, 4 processes with
  one connection each;
- drain, 4 processes (flowjobs and the bare driver only): flowjobs `--processes 4 --concurrency 1`
  beside the bare driver's 4 processes (the same measurement as in the row above);
- trigger -> start latency p50 / p99 at 200 triggers/s (flowjobs only, both backends).
Drain rates run from the first job starting to the last finishing, so start-up is excluded.
Peers run through PEERS_PYTHON (their own virtualenv) as subprocesses; flowjobs and the bare
driver through this interpreter. Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench import bare_drain, bare_enqueue, bench_server, drain, emit, fill, fresh, latency

ROUNDS = int(os.environ.get("BENCH_PEERS_ROUNDS", "3"))
RUNS = {
    "sqlite": int(os.environ.get("BENCH_PEERS_SQLITE_RUNS", "20000")),
    "postgresql": int(os.environ.get("BENCH_PEERS_PG_RUNS", "5000")),
}
PEER = {"sqlite": "huey", "postgresql": "procrastinate"}
PEERS_PYTHON = os.environ.get("PEERS_PYTHON", ".venv-peers/bin/python")
PEER_SCRIPT = str(Path(__file__).with_name("bench_peer_queues.py"))
SYSTEMS = ("flowjobs", "bare", "peer")


def peer(*argv) -> float:
    """Run one peer case in the peers' virtualenv; its rate per second."""
    out = subprocess.run(
        [PEERS_PYTHON, PEER_SCRIPT, *map(str, argv)], check=True, capture_output=True, text=True
    )
    line = json.loads(out.stdout.strip().splitlines()[-1])
    return line["per_s"]


def peer_where(backend: str, url: str) -> str:
    """The file (huey) or libpq URL (procrastinate) of a fresh database URL."""
    if backend == "sqlite":
        return url[len("sqlite:///") :]
    return url.replace("postgresql+psycopg://", "postgresql://")


def enqueue_and_drain_1(
    system: str, backend: str, pg: str | None, runs: int
) -> tuple[float, float]:
    """Enqueue `runs` jobs one by one, then drain them at concurrency 1: (enqueue/s, drain/s)."""
    url = fresh(backend, pg, f"peers_{system}_c1")
    if system == "flowjobs":
        return fill(url, runs, one_by_one=True), drain(
            backend, url, 1, 1, runs, fill_first=False, quiet=True
        )
    if system == "bare":
        enqueued = bare_enqueue(url, runs)
        return enqueued, bare_drain(url, runs, 1)
    where = peer_where(backend, url)
    return peer(PEER[backend], "enqueue", where, runs), peer(PEER[backend], "drain", where, runs, 1)


def drain_4(system: str, backend: str, pg: str | None, runs: int) -> float:
    """Fill a new queue (in batches where the system has them), drain it at concurrency 4."""
    url = fresh(backend, pg, f"peers_{system}_c4")
    if system == "flowjobs":
        return drain(backend, url, 1, 4, runs, quiet=True)
    if system == "bare":
        return bare_drain(url, runs, 4)  # fills in one transaction itself
    where = peer_where(backend, url)
    if backend == "sqlite":
        peer("huey", "enqueue", where, runs)  # huey has no batch enqueue
    else:
        peer("procrastinate", "enqueue", where, runs, "batch")
    return peer(PEER[backend], "drain", where, runs, 4)


def one_round(pg: str, rnd: int, results: dict) -> None:
    def record(backend, case, system, value, unit="per_s"):
        results.setdefault((backend, case), {}).setdefault(system, []).append(value)
        emit(
            round=rnd,
            backend=backend,
            case=case,
            system=name(backend, system),
            **{unit: round(value, 1)},
        )

    for backend in ("sqlite", "postgresql"):
        runs = RUNS[backend]
        order = SYSTEMS[rnd % 3 :] + SYSTEMS[: rnd % 3]  # rotate who goes first
        for system in order:
            enq, d1 = enqueue_and_drain_1(system, backend, pg, runs)
            record(backend, "enqueue one by one", system, enq)
            record(backend, "drain, concurrency 1", system, d1)
        for system in order:
            rate = drain_4(system, backend, pg, runs)
            record(backend, "drain, concurrency 4 (bare: 4 processes)", system, rate)
            if system == "bare":  # the same measurement is the bare limit of the next row
                results.setdefault((backend, "drain, 4 processes"), {}).setdefault(
                    "bare", []
                ).append(rate)
        url = fresh(backend, pg, "peers_flowjobs_p4")
        record(
            backend, "drain, 4 processes", "flowjobs", drain(backend, url, 4, 1, runs, quiet=True)
        )
        p50, p99 = latency(backend, fresh(backend, pg, "peers_latency"))
        results.setdefault((backend, "trigger -> start p50 (ms)"), {}).setdefault(
            "flowjobs", []
        ).append(p50)
        results.setdefault((backend, "trigger -> start p99 (ms)"), {}).setdefault(
            "flowjobs", []
        ).append(p99)


def name(backend: str, system: str) -> str:
    return PEER[backend] if system == "peer" else system


def paired(a: list[float] | None, b: list[float] | None) -> list[float]:
    """Per-round ratios a/b: each round measures both within minutes of each other, so on a
    machine whose speed drifts (fsync times here swing several-fold between minutes) these
    compare like with like better than a ratio of the two medians would."""
    return [x / y for x, y in zip(a or [], b or [], strict=False)]


def table(results: dict) -> list[str]:
    def cell(values):
        if not values:
            return "—"
        if len(values) == 1:
            return f"{values[0]:,.0f}"
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"

    def ratio(values):
        return "—" if not values else f"{statistics.median(values):.2f}"

    lines = [
        "| case | flowjobs | bare driver | huey/procrastinate | ratio flowjobs/bare | ratio flowjobs/peer |",
        "|---|---|---|---|---|---|",
    ]
    for (backend, case), by in results.items():
        fj, bare, other = by.get("flowjobs"), by.get("bare"), by.get("peer")
        vs_bare, vs_peer = paired(fj, bare), paired(fj, other)
        label = f"{'SQLite' if backend == 'sqlite' else 'PostgreSQL'}: {case}"
        lines.append(
            f"| {label} | {cell(fj)} | {cell(bare)} | {cell(other)} | {ratio(vs_bare)} | {ratio(vs_peer)} |"
        )
        medians = {
            f"{name(backend, s)}_median": round(statistics.median(v), 1)
            for s, v in (("flowjobs", fj), ("bare", bare), ("peer", other))
            if v
        }
        ratios = {
            f"ratio_flowjobs_{what}_per_round": [round(r, 2) for r in rs]
            for what, rs in (("bare", vs_bare), (name(backend, "peer"), vs_peer))
            if rs
        }
        emit(summary=True, backend=backend, case=case, rounds=len(fj or []), **medians, **ratios)
    return lines


def main() -> None:
    if not Path(PEERS_PYTHON).exists():
        sys.exit(f"error: {PEERS_PYTHON} not found: run `make bench-peers` (it makes .venv-peers)")
    results: dict = {}
    with bench_server() as pg:
        for rnd in range(ROUNDS):
            one_round(pg, rnd, results)
    print()
    print(
        f"Medians of {ROUNDS} rounds (lowest–highest); {RUNS['sqlite']:,} jobs on SQLite (WAL, "
        f"synchronous=NORMAL), {RUNS['postgresql']:,} on PostgreSQL (stock durability); rates in "
        "jobs per second; a ratio is the median of the rounds' ratios."
    )
    print()
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
