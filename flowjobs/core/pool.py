"""The worker's pool: the threads that execute claimed runs, and the monitor that watches them.

- task threads: `concurrency` long-lived threads take claimed runs from an in-memory queue
  (starting a thread per run cost more than the run itself). A fault around a task
  (preloading its imports, an exception whose message cannot be made) is a `crashed` outcome,
  never a thread lost with its slot.
- monitor thread: renews leases every lease/3 (fenced by epoch), notices cancel requests, and
  ends attempts that pass their timeout as `timed_out`. A hung task's thread is abandoned (its
  slot freed, its late result discarded, a fresh thread spawned in its place): no task can
  wedge the worker.
- settle: the single place an attempt ends, guarded so that a task finishing and the monitor
  timing it out cannot both report it. What becomes of the outcome is the worker's business
  (`on_settled`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowjobs.core.context import TaskContext
from flowjobs.core.executor import Outcome, perform
from flowjobs.core.preload import Preloader
from flowjobs.store.jobs import ClaimedRun
from flowjobs.store.states import AttemptOutcome as A

if TYPE_CHECKING:
    from flowjobs.core.registry import Task

log = logging.getLogger("flowjobs.worker")


@dataclass
class InFlight:
    run: ClaimedRun
    task: Task | None  # None: not registered in this worker (the run is aborted)
    ctx: TaskContext
    started_ms: int
    deadline: float  # time.monotonic()
    next_heartbeat: float
    settled: bool = False
    executing: bool = False  # a pool thread is inside the task right now
    thread: threading.Thread | None = None


class Pool:
    def __init__(
        self,
        store,
        clock,
        concurrency: int,
        lease: float,
        outage,
        on_settled: Callable[[InFlight, Outcome, bool], None],
    ):
        """`on_settled(flight, outcome, write)` is called once per attempt that ends (`write`
        False: the lease was lost, the outcome must not be written)."""
        self.store = store
        self.clock = clock
        self.concurrency = concurrency
        self.lease = lease
        self.outage = outage
        self.on_settled = on_settled
        self.lock = threading.Lock()
        self.inflight: dict[str, InFlight] = {}
        self.started = 0  # runs started
        self.executing = 0  # runs whose task has not returned (or been abandoned)
        self._stopping = threading.Event()
        self._monitor_thread: threading.Thread | None = None
        self._ready: queue.SimpleQueue = queue.SimpleQueue()  # claimed runs waiting for a thread
        self._retired: set[threading.Thread] = set()  # threads stuck in an abandoned task
        self._preloader = Preloader()  # a task's lazy imports, once, one task at a time

    def start(self, flight: InFlight) -> None:
        """Hand a claimed run to a task thread (or settle it at once when its task is unknown)."""
        with self.lock:
            self.inflight[flight.run.id] = flight
            self.started += 1
            self.executing += 1
            first = self._monitor_thread is None
            if first:
                self._monitor_thread = _spawn(self._monitor, "flowjobs-monitor")
        if first:
            for _ in range(self.concurrency):
                _spawn(self._execute, "flowjobs-task")
        if flight.task is None:
            self.settle(
                flight,
                Outcome(
                    A.ABORTED, error=f"no task {flight.run.task!r} is registered in this worker"
                ),
            )
            return
        self._ready.put(flight)

    def release(self, flights: list[InFlight]) -> None:
        """Forget attempts whose outcomes are written (or dropped)."""
        with self.lock:
            for flight in flights:
                self.inflight.pop(flight.run.id, None)

    def idle(self) -> bool:
        with self.lock:
            return not self.inflight

    def stop(self) -> None:
        """Threads leave once nothing is in flight (a process may run many workers: tests)."""
        self._stopping.set()
        for _ in range(self.concurrency + len(self._retired)):
            self._ready.put(None)

    def settle(self, flight: InFlight, outcome: Outcome, write: bool = True) -> None:
        """End an attempt once; a task still running in another thread is abandoned."""
        with self.lock:
            if flight.settled:
                return
            flight.settled = True
            self.executing -= 1
            # Abandoning a task that is still running: its thread leaves the pool when (if)
            # the task returns, and a fresh thread takes its place now.
            thread = flight.thread  # set together with `executing`, under this lock
            abandoned = flight.executing and thread is not threading.current_thread()
            if abandoned and thread is not None:
                self._retired.add(thread)
        if abandoned:
            _spawn(self._execute, "flowjobs-task")
        self.on_settled(flight, outcome, write)

    # -- task threads ------------------------------------------------------------------
    def _execute(self) -> None:
        """A pool thread: runs tasks one after another until it is retired."""
        me = threading.current_thread()
        while me not in self._retired:
            flight = self._ready.get()
            if flight is None:  # the worker stopped
                return
            with self.lock:
                if flight.settled:  # timed out or canceled before it began
                    continue
                flight.thread, flight.executing = me, True
            try:
                self._preloader.ensure(flight.task.module)
                outcome = perform(flight.task, flight.run.payload, flight.ctx)
            except BaseException as exc:  # a fault outside the task must not cost a slot
                log.exception("run %s: the worker failed around its task", flight.run.id)
                outcome = Outcome(A.CRASHED, error=f"worker fault: {type(exc).__name__}")
            with self.lock:
                flight.executing = False
            self.settle(flight, outcome)
        with self.lock:
            self._retired.discard(me)

    # -- monitor -----------------------------------------------------------------------
    def _monitor(self) -> None:
        while not (self._stopping.is_set() and not self.inflight):
            with self.lock:
                flights = [f for f in self.inflight.values() if not f.settled]
            now = time.monotonic()
            for flight in flights:
                try:
                    self._watch(flight, now)
                except Exception:
                    log.exception("run %s: heartbeat failed", flight.run.id)
            time.sleep(0.05 if flights else 0.2)

    def _watch(self, flight: InFlight, now: float) -> None:
        if now >= flight.deadline:
            flight.ctx.canceled.set()
            self.settle(flight, Outcome(A.TIMED_OUT, error="attempt timed out"))
            return
        if now < flight.next_heartbeat:
            return
        try:
            ours, cancel = self.store.heartbeat(
                flight.run.id,
                flight.run.lease_epoch,
                self.clock.now_ms(),
                int(self.lease * 1000),
            )
        except Exception as exc:
            pause = self.outage.failed(exc)
            if pause is None:
                raise
            flight.next_heartbeat = now + min(pause, self.lease / 3)  # renew once it is back
            return
        flight.next_heartbeat = now + self.lease / 3
        if not ours:
            flight.ctx.canceled.set()
            log.warning("run %s: lease lost (another worker rescued it)", flight.run.id)
            self.settle(flight, Outcome(A.FAILED), write=False)
        elif cancel:
            flight.ctx.canceled.set()
            self.settle(flight, Outcome(A.CANCELED, error="canceled while executing"))


def _spawn(target, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
