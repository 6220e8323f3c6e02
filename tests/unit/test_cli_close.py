"""The CLI's teardown at exit (`flowjobs.cli.main._close`): bounded, and never an error of its
own. The runtime is a stand-in here: what is tested is the waiting, not the closing (which
`tests/integration/test_webhooks_http.py` sees through a real `serve`)."""

from __future__ import annotations

import threading
import time

from flowjobs.cli import main


class Stuck:
    """A runtime whose close waits until released, as one whose write lock a task thread
    still holds."""

    def __init__(self):
        self.called = threading.Event()
        self.release = threading.Event()

    def close(self):
        self.called.set()
        self.release.wait(30)


class Broken:
    def close(self):
        raise OSError("disk I/O error")


def test_a_close_that_hangs_is_waited_for_at_most_the_limit(monkeypatch):
    monkeypatch.setattr(main, "CLOSE_WAIT_S", 0.2)
    runtime = Stuck()
    try:
        start = time.monotonic()
        main._close(runtime)
        waited = time.monotonic() - start
        assert runtime.called.is_set() and not runtime.release.is_set()
        assert 0.2 <= waited < 5
    finally:
        runtime.release.set()


def test_a_close_that_fails_is_not_an_error_of_the_command():
    main._close(Broken())  # returns; the failure is only logged (debug)
