"""Run in child processes by the no-double-claim test: threads that claim and finish runs."""

import threading

from flowjobs.store.db import Database
from flowjobs.store.jobs import JobStore


def claim_all(url: str, threads: int, now: int, barrier, results) -> None:
    """Claim and complete runs with `threads` threads until none is left; put claimed ids."""
    store = JobStore(Database(url))
    with store.db.borrow():
        pass  # connect before the race starts
    barrier.wait()
    claimed: list[str] = []
    lock = threading.Lock()

    def loop(n: int) -> None:
        worker = f"proc-thread-{n}"
        while True:
            runs = store.claim(worker, 3, ["*"], {}, now, 60_000)
            if not runs:
                return
            for run in runs:
                assert store.finish(
                    run,
                    status="completed",
                    outcome="succeeded",
                    worker=worker,
                    now=now,
                    started_at=now,
                )
            with lock:
                claimed.extend(r.id for r in runs)

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    store.db.close()
    results.put(claimed)
