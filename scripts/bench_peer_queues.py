"""huey and procrastinate, driven for `make bench-peers` (scripts/bench_peers.py).

Runs under the peers' own virtualenv (.venv-peers), never flowjobs'; prints one JSON line.

    python bench_peer_queues.py huey enqueue FILE RUNS                    # one by one
    python bench_peer_queues.py huey drain FILE RUNS WORKERS              # consumer, WORKERS threads
    python bench_peer_queues.py procrastinate enqueue URL RUNS [batch]    # one by one (or 500 a call)
    python bench_peer_queues.py procrastinate drain URL RUNS CONCURRENCY  # worker, until queue empty

huey: SqliteHuey in WAL mode with synchronous=NORMAL (flowjobs' own SQLite pragmas; huey's
default would be synchronous=FULL); a consumer of WORKERS threads, started in this process as
`huey_consumer -w WORKERS -k thread` would. Its drain rate runs from the first task starting to
the last finishing (huey's executing/complete signals), as flowjobs' runs from the first claim
to the last finish. procrastinate: the psycopg 3 connector, `run_worker(wait=False)` (it exits
once the queue is empty); its rate runs from the first `started` to the last `succeeded` event
in procrastinate_events. Tasks are no-ops that return None (huey stores no result).
"""

from __future__ import annotations

import json
import sys
import threading
import time


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


# -- huey -------------------------------------------------------------------------------------


def make_huey(path: str):
    from huey import SqliteHuey
    from huey.storage import SqliteStorage

    class NormalSyncStorage(SqliteStorage):
        def _create_connection(self):
            conn = super()._create_connection()  # journal_mode=wal
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn

    class BenchHuey(SqliteHuey):
        storage_class = NormalSyncStorage

    huey = BenchHuey("bench", filename=path)

    @huey.task(name="noop")
    def noop():
        return None

    return huey, noop


def huey_enqueue(path: str, runs: int) -> None:
    huey, noop = make_huey(path)
    noop.s()  # storage opened, tables made, before the clock starts
    huey.storage.conn  # noqa: B018
    start = time.perf_counter()
    for _ in range(runs):
        noop()
    rate = runs / (time.perf_counter() - start)
    emit(peer="huey", case="enqueue", runs=runs, per_s=rate)


def huey_drain(path: str, runs: int, workers: int) -> None:
    from huey.signals import SIGNAL_COMPLETE, SIGNAL_EXECUTING

    huey, _ = make_huey(path)
    lock, finished = threading.Lock(), threading.Event()
    first: list[float] = []
    last = [0.0]
    count = [0]

    @huey.signal(SIGNAL_EXECUTING)
    def executing(signal, task, *args):
        if not first:
            with lock:
                if not first:
                    first.append(time.time())

    @huey.signal(SIGNAL_COMPLETE)
    def complete(signal, task, *args):
        with lock:
            count[0] += 1
            last[0] = time.time()
            if count[0] >= runs:
                finished.set()

    queued = huey.pending_count()
    consumer = huey.create_consumer(workers=workers, worker_type="thread")
    consumer.start()
    try:
        if not finished.wait(timeout=1800):
            raise SystemExit(f"huey drained {count[0]} of {runs} in 30 minutes")
    finally:
        consumer.stop(graceful=True)
    emit(
        peer="huey",
        case="drain",
        queued=queued,
        runs=count[0],
        workers=workers,
        per_s=count[0] / (last[0] - first[0]),
    )


# -- procrastinate ----------------------------------------------------------------------------


def make_app(url: str):
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")
    def noop():
        return None

    return app, noop


def procrastinate_enqueue(url: str, runs: int, batch: bool) -> None:
    app, noop = make_app(url)
    with app.open():
        try:
            app.schema_manager.apply_schema()
        except Exception as exc:  # already there (the c=1 drain reuses the enqueue's database)
            if "already exists" not in str(exc):
                raise
        start = time.perf_counter()
        if batch:
            for at in range(0, runs, 500):
                noop.batch_defer(*({} for _ in range(min(500, runs - at))))
        else:
            for _ in range(runs):
                noop.defer()
        rate = runs / (time.perf_counter() - start)
    emit(peer="procrastinate", case="enqueue", runs=runs, batch=batch, per_s=rate)


def procrastinate_drain(url: str, runs: int, concurrency: int) -> None:
    import asyncio

    import psycopg

    app, _ = make_app(url)

    async def work():
        async with app.open_async():
            await app.run_worker_async(
                concurrency=concurrency, wait=False, install_signal_handlers=False
            )

    asyncio.run(work())
    with psycopg.connect(url) as conn:
        first, last, done = conn.execute(
            "SELECT min(at) FILTER (WHERE type = 'started'), max(at) FILTER (WHERE type = 'succeeded'), "
            "count(*) FILTER (WHERE type = 'succeeded') FROM procrastinate_events"
        ).fetchone()
    if done != runs:
        raise SystemExit(f"procrastinate completed {done} of {runs}")
    emit(
        peer="procrastinate",
        case="drain",
        runs=done,
        concurrency=concurrency,
        per_s=done / (last - first).total_seconds(),
    )


def main(argv: list[str]) -> None:
    peer, case, where, runs, *rest = argv
    if (peer, case) == ("huey", "enqueue"):
        huey_enqueue(where, int(runs))
    elif (peer, case) == ("huey", "drain"):
        huey_drain(where, int(runs), int(rest[0]))
    elif (peer, case) == ("procrastinate", "enqueue"):
        procrastinate_enqueue(where, int(runs), rest == ["batch"])
    elif (peer, case) == ("procrastinate", "drain"):
        procrastinate_drain(where, int(runs), int(rest[0]))
    else:
        raise SystemExit(f"unknown case: {argv}")


if __name__ == "__main__":
    main(sys.argv[1:])
