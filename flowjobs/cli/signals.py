"""Signal handling that cannot deadlock.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread holds a lock inside `threading` (an `Event.clear()`, a `Condition`). A handler that
then sets an Event waits for that same lock forever: a worker that never stops on SIGTERM.
So the handlers here only write the signal number to a pipe; a thread reads it and acts.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable


def on_signals(act: Callable[[int], None], signums=(signal.SIGTERM, signal.SIGINT)) -> None:
    """Call `act(signum)` from a helper thread for each of `signums` received."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def handler(signum, _frame):
        try:
            os.write(write_end, bytes([signum]))
        except OSError:  # the pipe is full: signals are arriving faster than they matter
            pass

    def pump():
        while True:
            data = os.read(read_end, 1)
            if not data:
                return
            act(data[0])

    threading.Thread(target=pump, name="flowjobs-signals", daemon=True).start()
    for signum in signums:
        signal.signal(signum, handler)
