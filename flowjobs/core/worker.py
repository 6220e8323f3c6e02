"""The worker: claims due runs into free slots, executes them on a pool of threads, keeps their
leases alive, and writes each outcome exactly once.

Pieces (each small, each testable through `run_once`):
- the loop (main thread), one turn at a time: rescue expired leases every `rescue_interval`;
  then, in one write transaction, record the outcomes settled since the last turn and claim
  up to the free slots; hand the claimed runs to the task threads; then sleep until enough
  slots free, a PostgreSQL NOTIFY arrives, or `poll_interval` passes. One transaction per
  turn, not one to claim and one to record: on SQLite the single write lock is the limit.
- the pool (`core/pool.py`): task threads execute claimed runs; a monitor thread renews
  leases, notices cancel requests and ends attempts that pass their timeout. It settles each
  attempt once and hands the outcome here (`_on_settled`): the slot frees at once; the outcome
  waits in memory for the next turn, each row still fenced by its epoch when written. At
  concurrency 1 the task thread takes that turn itself and runs what it claimed
  (`_take_turn`): no hand-over between threads. Shutdown writes every outcome before it exits; the write is retried (tenacity) on
  transient database errors so an outcome is not lost to a busy SQLite file or a dropped
  connection.
- the rescuer (`core/rescuer.py`): every `rescue_interval`, runs whose lease expired (their
  worker died or stalled) are taken back.
- wake-ups: PostgreSQL NOTIFY or a watch on the SQLite WAL file (inotify), behind
  `store.listen_for_work`.
- outages (`Outage`): when the database goes away, is locked by another program or its disk
  is full, the worker does not exit. Running tasks go on; their outcomes stay in memory and
  are written when the database is back; the loop and the monitor retry with back-off and log
  once per change of state. After an outage this worker's rescuer waits one lease, so that
  live workers renew their leases (and write their outcomes) before any run is taken over.
- crashes: an attempt lost to a crash (its worker died: the rescuer) or to a fault of the
  program (an ImportError) counts against the run's crash budget (`[run] max_crashes`), not
  against its attempts.
- failure hooks: when a run fails for good and its task names `on_failure`, the hook's run is
  inserted in the same transaction as the failure (and by the rescuer likewise).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import tenacity

from flowjobs import ids
from flowjobs.core.context import TaskContext
from flowjobs.core.executor import Decision, Outcome, decide
from flowjobs.core.outage import Outage
from flowjobs.core.pool import InFlight, Pool
from flowjobs.core.rescuer import Rescuer
from flowjobs.core.retry import RetryPolicy
from flowjobs.errors import ExitStatus
from flowjobs.store import failures
from flowjobs.store.jobs import ClaimedRun, Finish, NewRun, Rescued
from flowjobs.store.states import RunStatus as S
from flowjobs.store.text import storable

_T = TypeVar("_T")

if TYPE_CHECKING:
    from flowjobs.core.registry import Task
    from flowjobs.store.wakeups import Listener

# An attempt's end waiting in the outbox to be written: what ran, how it ended, what follows.
_Settled = tuple[InFlight, Outcome, Decision, Finish]

MAX_BATCH = 500  # outcomes written in one statement at most
# A run given back past the shutdown timeout is due again this much later: its task thread
# cannot be stopped, and the process it runs in is gone by then (its teardown waits at most
# 10 s, cli/main.py), so no other worker runs it beside the old thread.
GIVE_BACK_DELAY_MS = 15_000
PRESENCE_INTERVAL = 5.0  # seconds between a worker's heartbeats in flowjobs_workers
FILE_CHECK_INTERVAL = 1.0  # seconds between two looks that the SQLite file is still the one opened
IDLE_MAX = 1.0  # seconds an idle PostgreSQL worker sleeps between looks (NOTIFY wakes it sooner)

log = logging.getLogger("flowjobs.worker")


@dataclass
class WorkerOptions:
    concurrency: int = 10
    queues: list[str] = field(default_factory=lambda: ["*"])
    lease: float = 30.0
    poll_interval: float = 0.05
    rescue_interval: float = 5.0
    shutdown_timeout: float = 30.0
    timeout_grace: float = 10.0  # after an attempt's timeout, its task's time to stop
    burst: bool = False
    max_jobs: int | None = None
    max_crashes: int = 10
    run_timeout: float = 3600.0  # an attempt's limit for tasks that declare none ([run] timeout)
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # for tasks that declare none


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{ids.new_id('w')[2:8]}"


class Worker:
    """Everything it works with is given: the job store, the registry of tasks, the client
    (follow-up and failure-hook runs), the clock, its options, and the services tasks reach
    through `ctx` (billing, documents, mail; see `TaskContext`)."""

    def __init__(
        self,
        store,
        registry,
        client,
        clock,
        options: WorkerOptions,
        services=None,
        worker_id: str | None = None,
    ):
        self.store = store
        self.registry = registry
        self.client = client
        self.clock = clock
        self.services = services
        self.opt = options
        self.id = worker_id or make_worker_id()
        self.limits = registry.queue_limits()
        self._tasks: dict[str, tuple[Task | None, float]] = {}
        self._wake = threading.Event()
        self.file_gone: str | None = None  # SQLite: the database file was deleted or replaced
        self._next_file_check = 0.0
        self._turn = threading.Lock()  # one turn at a time: the loop's or a task thread's
        self._listener: Listener | None = None  # of new work; opened by `run`
        self._stopping = threading.Event()
        self._next_rescue = 0.0
        self._next_presence = 0.0
        self._registered = False  # this worker's row exists in flowjobs_workers
        self._backlog = False  # the last claim filled every slot it asked for
        self._answered = False  # the database answered something in this loop turn
        self.stop_requested = False  # stop() was called (a signal), not a burst's end
        self._outbox: queue.SimpleQueue[_Settled] = queue.SimpleQueue()
        self._want = 1  # free slots the claim loop waits for; fewer do not wake it
        self.processed = 0  # attempts settled by this worker
        self.outage = Outage(failures.classify, self.store.db.reclaim_space)
        self._after_outage = False  # the last turn failed: delay the rescuer once it is back
        self.rescuer = Rescuer(
            store, self.id, options.max_crashes, self._rescue_hook, self._in_flight
        )
        self.pool = Pool(
            store,
            clock,
            options.concurrency,
            options.lease,
            self.outage,
            self._on_settled,
            self._nudge,
            self._take_turn if options.concurrency == 1 else None,
            options.timeout_grace,
        )

    # -- main loop ---------------------------------------------------------------------
    def run(self) -> int:
        self._listener = self.store.listen_for_work(self._wake, self._stopping)
        self.store.db.checkpoint_in_background()
        try:
            return self._run()
        finally:
            self._listener.close()
            self._listener = None
            self.store.db.stop_checkpointer()

    def _run(self) -> int:
        from flowjobs import __version__
        from flowjobs.store.db import redact

        log.info(
            "flowjobs %s worker %s started on %s: concurrency %d, queues %s",
            __version__,
            self.id,
            redact(self.store.db.url),
            self.opt.concurrency,
            ",".join(self.opt.queues),
        )
        while not self._stopping.is_set():
            self._wake.clear()
            idle = self.pool.idle()  # before the claim: no outcome was waiting to be written
            self._answered = False  # set by whatever in this turn the database answered
            try:
                claimed, asked = self.run_once()
                backlog = bool(asked) and len(claimed) == asked
                wait = 0.0 if backlog or not asked else self._idle_wait(claimed)
            except Exception as exc:
                pause = self.outage.failed(exc)
                if pause is None:
                    raise
                self._after_outage = True
                self._next_rescue = float("inf")  # not before this worker's outcomes are written
                self._stopping.wait(pause)
                continue
            if self._answered:  # a turn with nothing to write or claim asked nothing
                self._recovered()
            if self._done(claimed, idle):
                break
            if backlog:
                # A backlog: claim again once half the slots are free — fewer, larger claims
                # (each is a write transaction; on SQLite the one write lock is the limit) —
                # and let task threads that are about to settle do so first (a yield of the
                # GIL): short tasks end within microseconds of each other.
                self._wait_for_slots(max(1, self.opt.concurrency // 2), self.opt.poll_interval)
                time.sleep(0)
                continue
            if not asked:  # every slot busy: nothing to claim until one frees
                self._wait_for_slots(1, IDLE_MAX)
                continue
            self._sleep(wait)
        self._drain()
        self._stopping.set()
        self.pool.stop()
        self._stopped()
        log.info(
            "worker %s stopped after %d %s",
            self.id,
            self.processed,
            "attempt" if self.processed == 1 else "attempts",
        )
        if self.opt.burst and self.file_gone is None:
            self._say_what_waits()
        return 0 if self.file_gone is None else int(ExitStatus.DATABASE)

    def _say_what_waits(self) -> None:
        """A burst ends when nothing is due; a retry or a delayed run may still wait, and the
        operator (or cron) should know that this run did not leave the queue empty."""
        from flowjobs.core.clock import iso

        try:
            due = self.store.next_due()
        except Exception as exc:  # the database went away as the burst ended: nothing to add
            log.debug("after the burst, the next due run could not be read: %s", exc)
            return
        if due is None:
            return
        if due <= self.clock.now_ms():  # due, yet the burst ended: not a queue it takes
            log.info(
                "a run is due since %s in a queue this worker does not take (it takes %s): "
                "run a worker for that queue (`flowjobs runs list --status queued` shows it)",
                iso(due),
                ", ".join(self.opt.queues),
            )
        else:
            log.info(
                "a run still waits (retrying or delayed), due at %s: a burst from then on takes it",
                iso(due),
            )

    def _recovered(self) -> None:
        """A turn succeeded. After an outage, every lease may have expired meanwhile: wait one
        lease before rescuing, so that live workers renew theirs first."""
        self.outage.ok()
        if self._after_outage:
            self._after_outage = False
            self._next_rescue = time.monotonic() + self.opt.lease

    def run_once(self) -> tuple[list[ClaimedRun], int]:
        """One turn: rescue if due; write the outcomes settled since the last turn and claim
        into the free slots, in one transaction; start what was claimed. Returns (claimed, asked)."""
        now = self.clock.now_ms()
        if time.monotonic() >= self._next_presence:
            self._presence(now)
            self._answered = True
        if time.monotonic() >= self._next_file_check:
            self._check_file()
            if self.file_gone is not None:
                return [], 0  # claim nothing more from the file it has lost
        if time.monotonic() >= self._next_rescue:
            self._next_rescue = time.monotonic() + self.opt.rescue_interval
            self.rescuer.run_once(now)
            self._answered = True
        with self._turn:
            claimed, asked, _ = self._turn_once(now, keep=False)
        return claimed, asked

    def _turn_once(self, now: int, keep: bool) -> tuple[list[ClaimedRun], int, InFlight | None]:
        """Under `_turn`: write the waiting outcomes and claim into the free slots in one
        transaction, then start what was claimed (before another turn counts free slots).
        `keep`: the calling task thread executes the first run itself (returned)."""
        batch = self._take_outcomes()
        asked = max(self._free_slots(own=1 if keep else 0), 0)
        if not batch and not asked:
            return [], 0, None
        claimed = self._write(batch, asked, now)
        self._answered = True
        # A full claim means a backlog: next turn skips the read that spares an idle SQLite
        # worker the write lock.
        self._backlog = bool(asked) and len(claimed) == asked
        started, clock = self.clock.now_ms(), time.monotonic()
        kept = None
        for run in claimed:
            flight = self._start(run, started, clock, keep=keep and kept is None)
            kept = kept or flight
        return claimed, asked, kept

    def _take_turn(self) -> InFlight | None:
        """At concurrency 1, the task thread that just settled takes the next turn itself (its
        slot still counted as busy, so that the loop does not take the turn for it): writes its
        outcome and claims the next run in one transaction, and executes that run without a
        hand-over — two thread switches per run were most of a run's cost there. With more
        slots the loop takes the turns: it waits for half of them to free and fills them in one
        transaction (measured with 4 slots and noop tasks: threads refilling their own slots
        wrote 2 outcomes per transaction, the loop 4). The loop is woken when the claim comes
        up short (it then watches for new work) or nothing is left in flight."""
        if self._stopping.is_set() or self.outage.down:
            return None  # the pool frees the slot and wakes the loop
        with self._turn:
            claimed, asked, kept = self._turn_once(self.clock.now_ms(), keep=True)
        if len(claimed) < asked:
            self._wake.set()
        return kept

    # -- presence (flowjobs_workers) ---------------------------------------------------------
    def describe(self) -> dict:
        from flowjobs import __version__

        host, pid = socket.gethostname(), os.getpid()
        return {
            "id": self.id,
            "host": host,
            "pid": pid,
            "version": __version__,
            "queues": ",".join(self.opt.queues),
            "concurrency": self.opt.concurrency,
        }

    def _check_file(self) -> None:
        """SQLite: stop (exit code 4) once the database file was deleted or replaced under this
        worker (a `stat()` a second)."""
        self._next_file_check = time.monotonic() + FILE_CHECK_INTERVAL
        gone = self.store.db.replaced()
        if gone is None or self.file_gone is not None:
            return
        self.file_gone = gone
        log.error(
            "database file %s %s while this worker ran: stopping, since what it writes now "
            "would be lost and what is triggered now it would never see; start the worker "
            "again to use the file now at that path (exit code 4)",
            self.store.db.path,
            gone,
        )
        self.stop()

    def _presence(self, now: int) -> None:
        """Record this worker (first turn), then renew its heartbeat every PRESENCE_INTERVAL."""
        self._next_presence = time.monotonic() + PRESENCE_INTERVAL
        if not self._registered:
            self.store.register_worker(self.describe(), now)
            self._registered = True
            return
        with self.pool.lock:
            in_flight = len(self.pool.inflight)
        self.store.worker_heartbeat(self.id, now, in_flight, self.processed)

    def mark_stopped(self) -> None:
        """Record this worker stopped (a stop at once, from the signal thread)."""
        self._stopped()

    def _stopped(self) -> None:
        if not self._registered:
            return
        try:
            self.store.worker_stopped(self.id, self.clock.now_ms(), self.processed)
        except Exception as exc:  # the database is away: the row goes stale, which says as much
            log.debug("worker %s: could not record its stop: %s", self.id, exc)

    def _sleep(self, seconds: float) -> None:
        """Wait for a wake-up (slot freed, new work, stop) or `seconds`."""
        if self._listener is None:  # driven by `run_once` (tests): no listener
            self._wake.wait(seconds)
            return
        self._listener.wait(seconds)

    def _idle_wait(self, claimed: list[ClaimedRun]) -> float:
        """With nothing claimed, new runs announce themselves (PostgreSQL: NOTIFY; SQLite: the
        WAL file changes), so sleep until the next delayed or retrying run is due (at most
        IDLE_MAX); otherwise poll."""
        if claimed:
            return self.opt.poll_interval
        due = self.store.next_due()
        if due is None:
            return IDLE_MAX
        return min(max((due - self.clock.now_ms()) / 1000, self.opt.poll_interval), IDLE_MAX)

    def _wait_for_slots(self, wanted: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._want = wanted
        try:
            while self._free_slots() < wanted and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._wake.wait(left)
                self._wake.clear()
        finally:
            self._want = 1

    def _free_slots(self, own: int = 0) -> int:
        """A slot frees when its task returns; its outcome is written in the next turn, in the
        same transaction as the claim that refills it. `own`: slots the caller holds for the
        runs it is about to claim (a task thread's turn)."""
        with self.pool.lock:
            free = self.opt.concurrency - self.pool.executing + own
        if self.opt.max_jobs is not None:
            free = min(free, self.opt.max_jobs - self.pool.started)
        return free

    def _done(self, claimed: list[ClaimedRun], idle: bool) -> bool:
        """Burst: nothing was executing or waiting to be written here, and the claim found
        nothing this worker may take. --max-jobs: all started and settled."""
        if self.opt.max_jobs is not None and self.pool.started >= self.opt.max_jobs and idle:
            return True
        return self.opt.burst and idle and not claimed

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no run is executing here (for tests driving `run_once`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._flush()
            if self.pool.idle():
                return True
            self._wake.wait(0.01)
            self._wake.clear()
        return False

    def stop(self) -> None:
        """Stop claiming; in-flight runs finish (up to the shutdown timeout)."""
        self.stop_requested = True
        self._stopping.set()
        self._wake.set()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.opt.shutdown_timeout
        while time.monotonic() < deadline:
            try:
                self._flush()
            except Exception as exc:
                if self.outage.failed(exc) is None:
                    raise
            if self.pool.idle():
                return
            self._wake.wait(0.05)
            self._wake.clear()
        try:
            self._flush()  # what settled in the last moments
        except Exception as exc:
            if self.outage.failed(exc) is None:
                raise
        self.give_back_running(
            f"worker stopped past its shutdown timeout ({self.opt.shutdown_timeout:g}s)",
            "shutdown timeout",
        )

    def give_back_running(self, why: str, said: str) -> list[Rescued]:
        """End the attempts still executing here as crashed, due again in GIVE_BACK_DELAY_MS:
        a stop past the shutdown timeout, or at once (a second SIGTERM, from any thread). They
        used to wait a whole lease for another worker's rescuer."""
        with self.pool.lock:
            left = list(self.pool.inflight.values())
            running = [f for f in left if not f.settled]
            for flight in running:  # given back below: nothing the task does now is written
                flight.settled = flight.given_back = True
        for flight in running:
            flight.ctx.canceled.set()  # a task that looks stops
        now = self.clock.now_ms()
        try:
            given = self.rescuer.give_back(
                [(f.run.id, f.run.lease_epoch) for f in running], now, now + GIVE_BACK_DELAY_MS, why
            )
        except Exception as exc:
            if self.outage.failed(exc) is None:
                raise
            given = []
        for r in given:
            log.warning(
                "%s: run %s (%s) was still executing; attempt %d recorded as crashed -> %s, "
                "due again in %d s",
                said,
                r.id,
                r.task,
                r.attempt,
                r.status,
                GIVE_BACK_DELAY_MS // 1000,
                extra={"run_id": r.id, "task": r.task, "attempt": r.attempt, "worker": self.id},
            )
        taken = {r.id for r in given}
        finished = sorted(  # not those another give-back has in hand (a second SIGTERM
            # during the drain's: they were said to have "finished")
            f.run.id
            for f in left
            if not f.given_back and f.run.id not in taken
        )
        if finished:  # their tasks ended, but the database never took what they did
            log.warning(
                "%s: %d %s finished but %s outcome is not written (the database is away, or "
                "the stop came first): the rescuer runs %s again once %s lease runs out: %s",
                said,
                len(finished),
                "run" if len(finished) == 1 else "runs",
                "its" if len(finished) == 1 else "their",
                "it" if len(finished) == 1 else "them",
                "its" if len(finished) == 1 else "their",
                ", ".join(finished),
            )
        rest = sorted(f.run.id for f in running if f.run.id not in taken)
        if rest:
            log.warning(
                "%s: %d running %s left to the rescuer (the database did not take %s): %s",
                said,
                len(rest),
                "run" if len(rest) == 1 else "runs",
                "it" if len(rest) == 1 else "them",
                ", ".join(rest),
            )
        return given

    # -- one run -----------------------------------------------------------------------
    def _start(
        self, run: ClaimedRun, now_ms: int, now: float, keep: bool = False
    ) -> InFlight | None:
        """Start a claimed run; `now_ms` (clock) and `now` (monotonic) are the turn's. `keep`:
        returned for the calling task thread instead of queued for any."""
        task, timeout = self._task_info(run.task)
        ctx = TaskContext(
            run.id,
            run.task,
            run.attempt,
            run.max_attempts,
            self.client,
            self.store,
            self.clock,
            self.id,
            self.services,
            run.crashes,
        )
        return self.pool.start(
            InFlight(run, task, ctx, now_ms, now + timeout, now + self.opt.lease / 3), keep
        )

    def _task_info(self, task_id: str) -> tuple[Task | None, float]:
        """(task or None, attempt timeout in seconds), looked up once per task id."""
        info = self._tasks.get(task_id)
        if info is None:
            task = self.registry.get(task_id) if task_id in self.registry else None
            timeout = (task.timeout if task and task.timeout else None) or self.opt.run_timeout
            info = self._tasks[task_id] = (task, timeout)
        return info

    def _on_settled(self, flight: InFlight, outcome: Outcome, write: bool) -> None:
        """An attempt ended (the pool calls this once per attempt): queue its outcome for the
        next turn, or drop it (lease lost)."""
        if not write:
            self._release([flight])
            return
        run = flight.run
        policy = (
            flight.task.retry if flight.task and flight.task.retry else None
        ) or self.opt.retry
        now = self.clock.now_ms()
        decision = decide(
            outcome,
            run.attempt - run.crashes,
            run.max_attempts,
            policy,
            now,
            run.crashes,
            self.opt.max_crashes,
        )
        hook = (
            self._hook_run(flight.task, run.id, run.payload, outcome.error, now)
            if decision.status == S.FAILED
            else None
        )
        self._outbox.put(
            (
                flight,
                outcome,
                decision,
                Finish(
                    run,
                    status=decision.status,
                    outcome=decision.attempt_outcome,
                    worker=self.id,
                    now=now,
                    started_at=flight.started_ms,
                    result=outcome.result,
                    error=outcome.error,
                    traceback=outcome.traceback,
                    retry_at=decision.retry_at,
                    crashed=decision.crashed,
                    follow_up=hook,
                ),
            )
        )  # the next turn writes it (the pool then frees the slot, or lets the thread take it)

    def _hook_run(
        self, task, run_id: str, payload: str, error: str | None, now: int
    ) -> NewRun | None:
        """The run of `task.on_failure` for a run that failed for good, or None."""
        hook = getattr(task, "on_failure", None)
        if not hook:
            return None
        from flowjobs.core.client import TriggerItem

        try:
            return self.client.new_run(
                TriggerItem(
                    hook,
                    {
                        "runId": run_id,
                        "task": task.id,
                        "payload": json.loads(payload),
                        "error": storable(error),  # as the run's row has it
                    },
                    idempotency_key=f"on-failure:{run_id}",
                    parent_id=run_id,
                ),
                now,
            )
        except Exception as exc:
            log.error("run %s: its failure hook %r cannot be triggered: %s", run_id, hook, exc)
            return None

    def _rescue_hook(self, rescued: Rescued) -> NewRun | None:
        if rescued.status != S.FAILED:
            return None
        task, _ = self._task_info(rescued.task)
        return self._hook_run(
            task,
            rescued.id,
            rescued.payload,
            "worker lost its lease (crashed or stalled)",
            self.clock.now_ms(),
        )

    def _in_flight(self) -> set[str]:
        """The runs this worker is running, or has run and not yet written."""
        with self.pool.lock:
            return set(self.pool.inflight)

    def _release(self, flights: list[InFlight], nudge: bool = True) -> None:
        """Forget written (or dropped) attempts; `nudge`: wake the loop if enough slots are
        free (not within a turn, which refills them itself)."""
        if not flights:
            return  # nothing changed: a wake-up now would spin an idle worker
        self.pool.release(flights)
        self.processed += len(flights)
        if nudge:
            self._nudge()

    def _nudge(self) -> None:
        """Wake the claim loop once enough slots are free (each wake-up costs a thread switch)."""
        if self._free_slots() >= self._want or self.pool.idle():
            self._wake.set()

    def _take_outcomes(self) -> list[_Settled]:
        batch: list[_Settled] = []
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._outbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _flush(self) -> None:
        """Write settled outcomes without claiming (while draining, or for `wait_idle`)."""
        with self._turn:
            batch = self._take_outcomes()
            if batch:
                self._write(batch, 0, self.clock.now_ms())

    def _write(self, batch: list[_Settled], asked: int, now: int) -> list[ClaimedRun]:
        """Write `batch` and claim up to `asked` runs in one transaction (retried on transient
        errors). If that fails otherwise, each outcome is written alone, so that one bad row
        cannot lose the others, and the claim is made on its own. An outcome that cannot be
        written is left to the rescuer (its lease expires)."""
        finishes = [item[3] for item in batch]
        lease_ms = int(self.opt.lease * 1000)

        tries = [now]  # the turn's clock reading for its first try; a retry reads it again

        def turn() -> tuple[list[bool], list[ClaimedRun]]:
            at = tries.pop() if tries else self.clock.now_ms()  # leases from the retry's time
            return self.store.finish_and_claim(
                finishes,
                self.id,
                asked,
                self.opt.queues,
                self.limits,
                at,
                lease_ms,
                check_due=not self._backlog,
            )

        try:
            written, claimed = self._retrying_transient(turn)
        except Exception as exc:
            if not batch:
                raise
            if self.store.db.is_transient(exc):  # an outage: keep the outcomes for a later turn
                self._requeue(batch)
                raise
            log.warning(
                "writing %d outcome(s) with a claim failed (%s); writing each alone",
                len(batch),
                exc,
            )
            # outcomes first, settled before the claim is tried again (which may fail too)
            self._settled(batch, self._write_each(batch))
            return (
                self.store.claim(self.id, asked, self.opt.queues, self.limits, now, lease_ms)
                if asked
                else []
            )
        self._settled(batch, written)
        return claimed

    def _write_each(self, batch: list[_Settled]) -> list[bool]:
        """Write outcomes one at a time after a batch failed: one bad row cannot lose the others.
        An outage meanwhile keeps the rest (this one included) for a later turn."""
        written = []
        for i, item in enumerate(batch):
            finish = item[3]
            try:
                written.append(self.store.finish_many([finish])[0])
            except Exception as exc:
                if self.store.db.is_transient(exc):
                    self._settled(batch[:i], written)
                    self._requeue(batch[i:])
                    raise
                log.error(
                    "run %s: could not record attempt %d (%s); the rescuer will retry it",
                    finish.run.id,
                    finish.run.attempt,
                    exc,
                )
                written.append(True)
        return written

    def _requeue(self, batch: list[_Settled]) -> None:
        for item in batch:
            self._outbox.put(item)

    def _settled(self, batch: list[_Settled], written: list[bool]) -> None:
        for (flight, outcome, decision, _), ok in zip(batch, written):
            run = flight.run
            fields = {"run_id": run.id, "task": run.task, "attempt": run.attempt, "worker": self.id}
            if not ok:
                log.warning(
                    "run %s: lease lost before attempt %d finished; its outcome is discarded",
                    run.id,
                    run.attempt,
                    extra=fields,
                )
            elif decision.status != S.COMPLETED:
                log.warning(
                    "run %s (%s) attempt %d %s: %s -> %s",
                    run.id,
                    run.task,
                    run.attempt,
                    decision.attempt_outcome,
                    outcome.error,
                    decision.status,
                    extra=fields,
                )
            if outcome.logs:
                self._write_logs(outcome.logs, fields)
        self._release([item[0] for item in batch], nudge=False)  # the turn refills the slots

    def _write_logs(self, lines, fields: dict) -> None:
        """The log lines a task wrote while the database was away, after its outcome (the
        database just took that): with the times they were logged at."""
        try:
            self.store.add_logs(lines)
        except Exception as exc:
            log.warning(
                "run %s: %d log line(s) of attempt %d were lost: %s",
                fields["run_id"],
                len(lines),
                fields["attempt"],
                exc,
                extra=fields,
            )

    def _retrying_transient(self, write: Callable[[], _T]) -> _T:
        """`write()`, retried with tenacity on transient errors for up to 5 s (longer outages:
        the loop backs off). The first try is a plain call: a `Retrying` costs ~50 µs of
        Python per turn, a tenth of a whole run at concurrency 1, and is only needed once a
        try has failed. Its first retry follows at once (a PostgreSQL connection that
        failed was closed; SQLite waited out its busy timeout), the later ones 50 ms … apart."""
        try:
            return write()
        except Exception as exc:
            if not self.store.db.is_transient(exc):
                raise
        retrying = tenacity.Retrying(  # a failed connection is dropped by the pool; a retry takes a new one
            retry=tenacity.retry_if_exception(self.store.db.is_transient),
            wait=tenacity.wait_exponential(multiplier=0.05, max=2.0),
            stop=tenacity.stop_after_delay(5),
            reraise=True,
        )
        return retrying(write)
