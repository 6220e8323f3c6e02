"""Signal handling that cannot deadlock, and is not held up by the main thread.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread holds a lock inside `threading` (an `Event.clear()`, a `Condition`). A handler that
then sets an Event waits for that same lock forever: a worker that never stops on SIGTERM.
And it runs only once the main thread is back from C: a worker blocked in SQLite's busy wait
took a second SIGTERM ("stop at once") up to the busy timeout (30 s) late. So the signal
number is written to a pipe by the interpreter's C-level handler (`signal.set_wakeup_fd`) the
moment the signal arrives, the Python handlers do nothing, and a thread reads the pipe and acts.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable


def on_signals(act: Callable[[int], None], signums=(signal.SIGTERM, signal.SIGINT)) -> None:
    """Call `act(signum)` from a helper thread for each of `signums` received (call it from
    the main thread: the wake-up file is the process's one)."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # full (signals faster than they matter): dropped
    wanted = set(signums)

    def pump():
        while True:
            data = os.read(read_end, 1)
            if not data:
                return
            if data[0] in wanted:  # any signal with a Python handler writes its number
                act(data[0])

    threading.Thread(target=pump, name="flowjobs-signals", daemon=True).start()
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)  # first: none is swallowed
    for signum in signums:
        signal.signal(signum, _nothing)


def _nothing(_signum, _frame) -> None:
    """The Python-level handler: the C-level one has written the number to the pipe already."""
