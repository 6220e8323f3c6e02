"""`run-worker --processes P`: P worker processes under one supervisor.

The supervisor runs no tasks. It starts P children (`flowjobs run-worker --processes 1 …`),
restarts a child that dies unexpectedly (with a short back-off), forwards SIGTERM/SIGINT,
and exits when every child has exited after a stop (or, in burst mode, when all are done).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

log = logging.getLogger("flowjobs.supervisor")


class Supervisor:
    def __init__(self, child_argv: list[str], processes: int, burst: bool, restart_delay: float = 1.0):
        self.argv = child_argv
        self.processes = processes
        self.burst = burst
        self.restart_delay = restart_delay
        self.children: list[subprocess.Popen | None] = [None] * processes
        self.stopping = False
        self.signals = 0

    def _spawn(self, slot: int) -> None:
        self.children[slot] = subprocess.Popen(self.argv)
        log.info("started worker process %d (pid %d)", slot, self.children[slot].pid)

    def _on_signal(self, signum, _frame) -> None:
        self.signals += 1
        self.stopping = True
        for child in self.children:
            if child and child.poll() is None:
                child.send_signal(signal.SIGKILL if self.signals > 1 else signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for slot in range(self.processes):
            self._spawn(slot)
        finished = [False] * self.processes
        worst = 0
        while not all(finished):
            time.sleep(0.1)
            for slot, child in enumerate(self.children):
                if finished[slot] or child is None or child.poll() is None:
                    continue
                code = child.returncode
                if self.stopping or (self.burst and code == 0):
                    finished[slot] = True
                    worst = max(worst, code if code > 0 else 0)
                    continue
                log.warning("worker process %d (pid %d) exited with %s; restarting", slot, child.pid, code)
                time.sleep(self.restart_delay)
                if not self.stopping:
                    self._spawn(slot)
        return worst


def child_argv(config: str | None, log_level: str, args: list[str]) -> list[str]:
    argv = [sys.executable, "-m", "flowjobs", "--log-level", log_level]
    if config:
        argv += ["--config", config]
    return argv + ["run-worker", "--processes", "1"] + args
