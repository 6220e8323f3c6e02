"""The worker's pool: the threads that execute claimed runs, and the monitor that watches them.

- task threads: `concurrency` long-lived threads take claimed runs from an in-memory queue
  (starting a thread per run cost more than the run itself). A fault around a task
  (preloading its imports, an exception whose message cannot be made) is a `crashed` outcome,
  never a thread lost with its slot.
- monitor thread: renews leases every lease/3 (fenced by epoch), notices cancel requests, and
  times attempts out. Past its timeout an attempt is told to stop (`ctx.canceled`) and given
  `timeout_grace` to do so, its lease still renewed and its slot still held: it ends
  `timed_out` when its thread returns (whatever it returned), so its retry never runs beside
  it. A task still running after the grace is abandoned (its slot freed, its late result
  discarded, a fresh thread spawned in its place): no task can wedge the worker.
- settle: the single place an attempt ends, guarded so that a task finishing and the monitor
  timing it out cannot both report it. What becomes of the outcome is the worker's business
  (`on_settled`); then the worker hears that a slot is free (`on_free`). With `take_turn`
  (a worker at concurrency 1), the task thread instead keeps its slot and asks for the run
  that refills it, and executes it without a hand-over to another thread (two thread switches
  per run were most of a run's cost there).
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
TIMED_OUT = "attempt timed out"


@dataclass
class InFlight:
    run: ClaimedRun
    task: Task | None  # None: not registered in this worker (a crash: left for another)
    ctx: TaskContext
    started_ms: int
    deadline: float  # time.monotonic()
    next_heartbeat: float
    settled: bool = False
    executing: bool = False  # a pool thread is inside the task right now
    thread: threading.Thread | None = None
    timed_out: bool = False  # past its deadline: told to stop, ends `timed_out` either way
    given_back: bool = False  # settled by a give-back (a stop past the timeout, or at once)


class Pool:
    def __init__(
        self,
        store,
        clock,
        concurrency: int,
        lease: float,
        outage,
        on_settled: Callable[[InFlight, Outcome, bool], None],
        on_free: Callable[[], None],
        take_turn: Callable[[], InFlight | None] | None = None,
        timeout_grace: float = 10.0,
    ):
        """`on_settled(flight, outcome, write)` is called once per attempt that ends (`write`
        False: the lease was lost, the outcome must not be written), then `on_free()` once its
        slot is free. `take_turn()`, if given, is called by a task thread that just settled
        while its slot is still counted as busy: it returns the run that thread executes next
        (already started in the slot), or None (then `on_free` follows)."""
        self.store = store
        self.clock = clock
        self.concurrency = concurrency
        self.lease = lease
        self.outage = outage
        self.on_settled = on_settled
        self.on_free = on_free
        self.take_turn = take_turn
        self.timeout_grace = timeout_grace
        self.lock = threading.Lock()
        self.inflight: dict[str, InFlight] = {}
        self.started = 0  # runs started
        self.executing = 0  # runs whose task has not returned (or been abandoned)
        self._stopping = threading.Event()
        self._monitor_thread: threading.Thread | None = None
        self._ready: queue.SimpleQueue = queue.SimpleQueue()  # claimed runs waiting for a thread
        self._retired: set[threading.Thread] = set()  # threads stuck in an abandoned task
        self._preloader = Preloader()  # a task's lazy imports, once, one task at a time

    def start(self, flight: InFlight, keep: bool = False) -> InFlight | None:
        """Hand a claimed run to a task thread (or settle it at once when its task is unknown).
        `keep`: the calling task thread executes it itself; it is returned instead of queued."""
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
            # A worker deployed without the task's module (a stale unit, a rolling deploy): its
            # fault, not the run's. Counted as a crash — back off, never an attempt — so a
            # worker that has the task takes it; it fails only once the crash budget is spent
            # (no worker has it at all).
            self.settle(
                flight,
                Outcome(
                    A.CRASHED,
                    error=f"no task {flight.run.task!r} is registered in this worker (its "
                    "[tasks] modules lack it); left for a worker that has it",
                    unregistered=True,
                ),
            )
            return None
        if keep:
            return flight
        self._ready.put(flight)
        return None

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

    def settle(
        self,
        flight: InFlight,
        outcome: Outcome,
        write: bool = True,
        keep_slot: bool = False,
        only_waiting: bool = False,
    ) -> bool:
        """End an attempt once (False: it had ended already, or `only_waiting` and a thread is
        in its task); a task still running in another thread is abandoned. Then its slot is
        free (`keep_slot`: the calling task thread keeps it for `take_turn` and frees it
        after)."""
        with self.lock:
            if flight.settled or (only_waiting and flight.executing):
                return False
            flight.settled = True
            if not keep_slot:
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
        if not keep_slot:
            self.on_free()
        return True

    # -- task threads ------------------------------------------------------------------
    def _execute(self) -> None:
        """A pool thread: runs tasks one after another until it is retired."""
        me = threading.current_thread()
        flight: InFlight | None = None
        while me not in self._retired:
            if flight is None:
                flight = self._ready.get()
                if flight is None:  # the worker stopped
                    return
            with self.lock:
                if flight.settled:  # timed out or canceled before it began
                    flight = None
                    continue
                flight.thread, flight.executing = me, True
            try:
                task = flight.task
                assert task is not None  # a run of an unknown task is settled when it starts
                self._preloader.ensure(task.module)
                outcome = perform(task, flight.run.payload, flight.ctx)
            except BaseException as exc:  # a fault outside the task must not cost a slot
                log.exception("run %s: the worker failed around its task", flight.run.id)
                outcome = Outcome(A.CRASHED, error=f"worker fault: {type(exc).__name__}")
            with self.lock:
                flight.executing = False
            if flight.timed_out:  # returned within its grace: its result is not kept
                outcome = Outcome(A.TIMED_OUT, error=TIMED_OUT, logs=outcome.logs)
            if self.take_turn is None:
                self.settle(flight, outcome)
                flight = None
            else:
                flight = self._next() if self.settle(flight, outcome, keep_slot=True) else None
        with self.lock:
            self._retired.discard(me)

    def _next(self) -> InFlight | None:
        """After settling with the slot kept: the run this thread executes next, if the worker's
        turn hands it one; then the old run's slot is freed (the new run holds one of its own)."""
        following = None
        try:
            following = self.take_turn()  # type: ignore[misc]
        except Exception:
            log.exception("a task thread's turn failed; the worker's loop takes it")
        with self.lock:
            self.executing -= 1
        if following is None:
            self.on_free()
        return following

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
        if now >= flight.deadline and not flight.timed_out:
            flight.timed_out = True
            flight.ctx.canceled.set()  # the task is told; it has the grace to stop
            flight.deadline = now + self.timeout_grace
            # still waiting for a thread: nothing to wait for (decided under the pool's lock,
            # so a thread picking it up now is not abandoned at once)
            if self.settle(flight, Outcome(A.TIMED_OUT, error=TIMED_OUT), only_waiting=True):
                return
        elif now >= flight.deadline:  # the grace is over too: abandoned
            log.warning(
                "run %s: its task did not stop within %gs of its timeout; its thread is "
                "abandoned (it may still be running)",
                flight.run.id,
                self.timeout_grace,
            )
            self.settle(
                flight,
                Outcome(
                    A.TIMED_OUT,
                    error=f"attempt timed out; its task did not stop within {self.timeout_grace:g}"
                    "s and was abandoned (it may still be running)",
                ),
            )
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
