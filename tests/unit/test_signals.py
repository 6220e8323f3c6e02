"""Signal handlers must not deadlock a process whose main thread holds a threading lock."""

import signal
import threading

from flowjobs.cli.signals import on_signals


def test_a_signal_arriving_while_the_main_thread_holds_the_events_lock_still_acts():
    # The worker's main thread spends its life in Event.wait()/clear(), i.e. holding the
    # Event's internal lock for short moments. A handler that called Event.set() directly
    # while the interrupted thread held that lock waited for itself forever (a worker that
    # ignored SIGTERM). Here the signal lands exactly inside that window.
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        on_signals(lambda _signum: stop.set(), signums=(signal.SIGUSR1,))
        with stop._cond:  # what Event.clear() holds
            signal.raise_signal(signal.SIGUSR1)  # the handler runs here, in this thread
            assert not stop.is_set()
        assert stop.wait(5), "the signal was never acted on"
    finally:
        signal.signal(signal.SIGUSR1, previous)
