"""How an idle worker hears of new work: a watch on the SQLite WAL file (inotify), the polling
fallback, PostgreSQL NOTIFY — each against a real database, with commits made by another
process or connection."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from flowjobs.runtime import Runtime
from flowjobs.store import wakeups
from tests.conftest import make_settings


def _listener(rt: Runtime):
    wake, stopping = threading.Event(), threading.Event()
    return rt.store.listen_for_work(wake, stopping), wake, stopping


def _returns_within(listener, action, limit: float = 20.0) -> float:
    """Seconds `listener.wait(limit)` took while `action` ran in another thread."""
    done = threading.Event()
    took: list[float] = []

    def wait():
        start = time.monotonic()
        done.set()
        listener.wait(limit)
        took.append(time.monotonic() - start)

    thread = threading.Thread(target=wait)
    thread.start()
    done.wait(5)
    action()
    thread.join(limit + 5)
    return took[0]


def _trigger_in_another_process(url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "flowjobs", "--database", url, "trigger", "noop"],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def sqlite_rt(sqlite_url, tmp_path):
    rt = Runtime(make_settings(sqlite_url, tmp_path))
    rt.store.count_by_status()  # the WAL file exists once a connection has read
    yield rt
    rt.close()


def test_a_commit_by_another_process_ends_the_wait_at_once(sqlite_rt, sqlite_url):
    listener, _, _ = _listener(sqlite_rt)
    try:
        assert isinstance(listener, wakeups.WatchingListener)  # Linux: inotify
        took = _returns_within(listener, lambda: _trigger_in_another_process(sqlite_url))
        assert took < 15  # woken by the commit, not by the 20 s limit
    finally:
        listener.close()


def test_nothing_written_means_the_wait_runs_its_length(sqlite_rt):
    listener, _, _ = _listener(sqlite_rt)
    try:
        start = time.monotonic()
        listener.wait(0.3)
        assert time.monotonic() - start >= 0.29
    finally:
        listener.close()


def test_the_workers_own_wake_event_ends_the_wait(sqlite_rt):
    listener, wake, _ = _listener(sqlite_rt)
    try:
        assert _returns_within(listener, wake.set) < 15
    finally:
        listener.close()


def test_a_wal_file_removed_and_made_again_is_watched_again(sqlite_rt, sqlite_url):
    listener, _, _ = _listener(sqlite_rt)
    try:
        sqlite_rt.close()  # the last connection closes: SQLite checkpoints and removes the WAL
        wal = sqlite_rt.db.path + "-wal"
        assert not os.path.exists(wal)
        listener.wait(0.1)  # notices the removal (or the missing file)
        took = _returns_within(listener, lambda: _trigger_in_another_process(sqlite_url))
        assert took < 15
    finally:
        listener.close()


def test_without_inotify_the_wal_files_time_is_polled(sqlite_rt, sqlite_url, monkeypatch):
    monkeypatch.setattr(wakeups, "_inotify", lambda: None)
    listener, _, _ = _listener(sqlite_rt)
    try:
        assert isinstance(listener, wakeups.PollingListener)
        took = _returns_within(listener, lambda: _trigger_in_another_process(sqlite_url))
        assert took < 15
    finally:
        listener.close()


def test_postgresql_notify_ends_the_wait(pg_template, tmp_path):
    from tests.conftest import new_pg_database

    url = new_pg_database(pg_template)
    rt = Runtime(make_settings(url, tmp_path))
    listener, _, stopping = _listener(rt)
    try:
        # The LISTEN connection is opened by its own thread: a NOTIFY before it is up is not
        # heard, so trigger until one wait ends well before its limit.
        heard = any(
            _returns_within(listener, lambda: rt.trigger("noop"), limit=2.0) < 1.5
            for _ in range(20)
        )
        assert heard
    finally:
        stopping.set()
        listener.close()
        rt.close()
