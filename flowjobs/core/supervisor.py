"""`run-worker --processes P`: P worker processes under one supervisor.

The supervisor runs no tasks. It starts P children (`flowjobs run-worker --processes 1 …`),
restarts a child that dies unexpectedly (back-off: 1 s doubling to a minute), forwards
SIGTERM/SIGINT, and exits when every child has exited after a stop (or, in burst mode, when all
are done). A child that exits 2 (bad configuration) or 4 (database unreachable) stops them all
with that code: restarting it forever would only fill the logs.

The children run in a process group of their own, so a terminal's Ctrl-C (sent to the whole
foreground group) reaches only the supervisor, which passes one SIGTERM on: each child then
finishes its running tasks. (Before, each child took the Ctrl-C and the forwarded SIGTERM as
two signals, "stop at once", and left its runs to the rescuer.) The supervisor says once what
is happening; the children say nothing of the signal. A child whose supervisor dies (even by
SIGKILL) gets SIGTERM from the kernel (`adopt`), so no worker outlives its supervisor.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time

from flowjobs.logs import signal_line

log = logging.getLogger("flowjobs.supervisor")


FATAL = (2, 4)  # bad configuration, database unreachable: a restart would fail the same way
# (4: unless the database was checked before the children started — `database_checked` — when a
# child exiting 4 was restarted while the database is away, and is restarted again, with back-off)
MAX_DELAY = 60.0
STEADY = 30.0  # a child that ran this long before dying starts its back-off afresh
STOP_NOW_GRACE = 7.0  # seconds a child has to give its runs back after a second signal
SUPERVISOR_ENV = "FLOWJOBS_SUPERVISOR_PID"  # set in each child: the supervisor's pid
PR_SET_PDEATHSIG = 1  # prctl(2)


class Supervisor:
    def __init__(
        self,
        child_argv: list[str],
        processes: int,
        burst: bool,
        restart_delay: float = 1.0,
        grace: float = 30.0,
        database_checked: bool = False,
    ):
        """`grace`: how long a child waits for its running tasks after SIGTERM (what the
        supervisor tells the operator on a stop)."""
        self.argv = child_argv
        self.grace = grace
        self.processes = processes
        self.burst = burst
        self.restart_delay = restart_delay
        self.children: list[subprocess.Popen | None] = [None] * processes
        self.started = [0.0] * processes
        self.delays = [restart_delay] * processes  # the next back-off of each slot
        self.stopping = False
        self.signals = 0
        self.kill_at: float | None = None  # after a second signal: when children are killed
        self.up = database_checked  # the database answered before the children started

    def _spawn(self, slot: int) -> None:
        env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
        child = self.children[slot] = subprocess.Popen(self.argv, env=env, process_group=0)
        self.started[slot] = time.monotonic()
        log.info("started worker process %d (pid %d)", slot, child.pid)
        if self.stopping:  # a signal came while it started: the handler saw the slot's old one
            child.send_signal(signal.SIGUSR1 if self.signals > 1 else signal.SIGTERM)

    def _on_signal(self, signum, _frame) -> None:
        self.signals += 1
        self.stopping = True
        name = signal.Signals(signum).name
        if self.signals > 1:
            message = (
                f"received {name} again: stopping the worker processes now; their running runs "
                "are given back"
            )
        else:
            message = (
                f"received {name}: stopping {self.processes} worker processes (each finishes "
                f"its running tasks, up to {self.grace:g}s); send it again to stop at once"
            )
        os.write(2, signal_line(log.name, message))  # a signal handler: no logging locks
        if self.signals > 1:
            # SIGUSR1: each child gives its running runs back and exits at once (they were
            # SIGKILLed, their runs left `executing` until some other worker's rescuer came);
            # one that has not gone after STOP_NOW_GRACE is killed by the loop
            if self.kill_at is None:  # a third signal does not put the kill off
                self.kill_at = time.monotonic() + STOP_NOW_GRACE
            self._signal_children(signal.SIGUSR1)
        else:
            self._signal_children(signal.SIGTERM)

    def _signal_children(self, signum) -> None:
        for child in self.children:
            if child and child.poll() is None:
                child.send_signal(signum)

    def run(self) -> int:
        """Until every child has exited after a stop (or, in burst mode, finished). A child that
        exits 2 (bad configuration), or 4 (database unreachable) unless the database was checked
        before the children started, stops them all with its code; others restart with back-off
        (1 s doubling to a minute) — a 4 after the check means the database went away meanwhile,
        and the restarted child comes up once it is back."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for slot in range(self.processes):
            self._spawn(slot)
        finished = [False] * self.processes
        respawn_at: dict[int, float] = {}
        worst = 0
        while not all(finished):
            time.sleep(0.1)
            now = time.monotonic()
            if self.kill_at is not None and now >= self.kill_at:
                self.kill_at = None
                self._signal_children(signal.SIGKILL)
            for slot, at in list(respawn_at.items()):
                if self.stopping:
                    finished[slot] = True
                    del respawn_at[slot]
                elif now >= at:
                    del respawn_at[slot]
                    self._spawn(slot)
            for slot, child in enumerate(self.children):
                if finished[slot] or slot in respawn_at or child is None or child.poll() is None:
                    continue
                code = child.returncode
                if self.stopping or (self.burst and code == 0):
                    finished[slot] = True
                    worst = max(worst, code if code > 0 else 0)
                    continue
                if code in FATAL and not (code == 4 and self.up):
                    log.error(
                        "worker process %d exited with %d (%s); stopping the others: a restart "
                        "would fail the same way",
                        slot,
                        code,
                        "bad configuration" if code == 2 else "database unreachable or lost",
                    )
                    self.stopping = True
                    self._signal_children(signal.SIGTERM)
                    finished[slot] = True
                    worst = code
                    continue
                respawn_at[slot] = now + self._next_delay(slot, now)
                log.warning(
                    "worker process %d (pid %d) exited with %s; restarting in %gs",
                    slot,
                    child.pid,
                    code,
                    respawn_at[slot] - now,
                )
        # stopped at once by a second signal: runs were left to the rescuer, as a single worker
        # says with its exit code 1
        return 1 if self.signals > 1 else worst

    def _next_delay(self, slot: int, now: float) -> float:
        if now - self.started[slot] >= STEADY:
            self.delays[slot] = self.restart_delay
        delay = self.delays[slot]
        self.delays[slot] = min(delay * 2, MAX_DELAY)
        return delay


def supervised() -> bool:
    """Whether this process is a supervisor's child."""
    return SUPERVISOR_ENV in os.environ


def adopt() -> None:
    """In a supervisor's child: ask the kernel for SIGTERM when the supervisor dies (Linux), and
    stop at once if it died already, before the request was made."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: a child may outlive a killed supervisor
        pass
    supervisor = os.environ.pop(SUPERVISOR_ENV, None)  # not inherited by what tasks start
    if str(os.getppid()) != supervisor:
        raise SystemExit(0)


def child_argv(
    config: str | None, log_level: str, args: list[str], log_format: str = "auto"
) -> list[str]:
    argv = [sys.executable, "-m", "flowjobs", "--log-level", log_level, "--log-format", log_format]
    if config:
        argv += ["--config", config]
    return argv + ["run-worker", "--processes", "1"] + args
