"""The rescuer: a maintenance service that takes back runs whose worker lost its lease (died,
stalled, was cut off), in the manner of River's one-service-per-file maintenance services.

Each expired lease ends its attempt as `crashed`: the run is retried (a crash does not use an
attempt), failed when its crash budget (`[run] max_crashes`) is used up, or canceled when a
cancel was requested. A run that fails here and whose task names `on_failure` gets its hook
run in the same transaction. A worker never rescues the runs it is running (it renews their
leases), but does rescue its own runs it no longer runs: an outcome it could not write, or a
claim whose commit's answer was lost (the run is the worker's in the table, unknown to it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from flowjobs.store.jobs import NewRun, Rescued

log = logging.getLogger("flowjobs.worker")


class Rescuer:
    def __init__(
        self,
        store,
        worker_id: str,
        max_crashes: int,
        hook_run: Callable[[Rescued], NewRun | None] | None = None,
        in_flight: Callable[[], Collection[str]] | None = None,
    ):
        self.store = store
        self.worker_id = worker_id
        self.max_crashes = max_crashes
        self.hook_run = hook_run
        self.in_flight = in_flight  # the ids of the runs the worker is running now

    def run_once(self, now: int) -> list[Rescued]:
        """Rescue every run whose lease expired before `now` (one transaction); returns them."""
        running = self.in_flight() if self.in_flight is not None else None
        rescued = self.store.rescue(now, self.max_crashes, self.hook_run, self.worker_id, running)
        for r in rescued:
            log.warning(
                "run %s: lease of worker %s expired; attempt %d recorded as crashed -> %s",
                r.id,
                r.worker,
                r.attempt,
                r.status,
            )
        return rescued

    def give_back(self, runs: list[tuple[str, int]], now: int, due: int, why: str) -> list[Rescued]:
        """End the worker's own `(id, lease_epoch)` runs as a rescue would, now (a worker
        stopping past its shutdown timeout), due again at `due`; returns those ended."""
        return self.store.give_back(
            runs, self.worker_id, now, why, due, self.max_crashes, self.hook_run
        )
