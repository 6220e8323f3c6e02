"""Who checkpoints an SQLite WAL: a process that keeps writing hands it to a background thread
(`Database.statement`, `Checkpointer`), so that no commit of its pays for copying the WAL back
and syncing both files; a one-off command leaves it to SQLite's auto-checkpoint; a worker asks
for the thread from its start (`checkpoint_in_background`). Not timed: what is checked is
which connection checkpoints, and that the thread's checkpoints happen (the WAL starts over,
which its header counts)."""

import struct
import threading
import time
from pathlib import Path

import pytest

from flowjobs.runtime import Runtime
from flowjobs.store import db as dbmod
from tests.conftest import make_settings


def checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "flowjobs-checkpoint"]


def autocheckpoint(conn) -> int:
    return conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]


def wal_restarts(path: Path) -> int:
    """The WAL header's checkpoint sequence number: +1 each time a writer starts the WAL over
    after a checkpoint copied all of it back."""
    with open(f"{path}-wal", "rb") as wal:
        return struct.unpack(">I", wal.read(16)[12:16])[0]


@pytest.fixture
def rt(sqlite_url, clock, tmp_path):
    before = len(checkpointers())
    runtime = Runtime(make_settings(sqlite_url, tmp_path), clock=clock)
    yield runtime
    runtime.close()
    assert len(checkpointers()) == before  # close() stops the thread


def test_a_process_that_keeps_writing_checkpoints_in_the_background(rt, sqlite_url):
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    before = len(checkpointers())
    for _ in range(dbmod.BACKGROUND_CHECKPOINTS_AFTER - 1):
        rt.trigger("noop")
    with rt.db.statement() as writer:  # the 100th write: from now on, the thread checkpoints
        assert autocheckpoint(writer) == 0
    assert len(checkpointers()) == before + 1
    with rt.db.borrow() as other:  # connections opened from now on leave it to the thread too
        assert autocheckpoint(other) == 0

    # The thread checkpoints once the WAL passes WAL_CHECKPOINT_BYTES; the writer then starts
    # the WAL over. Nothing else checkpoints here (every connection has auto-checkpoints off).
    restarts = wal_restarts(path)
    deadline = time.monotonic() + 30
    while wal_restarts(path) == restarts:
        assert time.monotonic() < deadline, "the background thread never checkpointed"
        rt.trigger("noop")

    rt.db.close()  # stops the thread; a new writer checkpoints in its commits again
    assert len(checkpointers()) == before
    with rt.db.statement() as writer:
        assert autocheckpoint(writer) == 1000


def test_a_batch_counts_as_the_runs_it_inserts(rt):
    # 40 batches of 500 runs used to checkpoint in their own commits (each fills the WAL)
    from flowjobs.core.client import TriggerItem

    before = len(checkpointers())
    rt.client.batch_trigger(
        [TriggerItem("noop") for _ in range(dbmod.BACKGROUND_CHECKPOINTS_AFTER)]
    )
    assert len(checkpointers()) == before + 1
    with rt.db.statement() as writer:
        assert autocheckpoint(writer) == 0


def test_a_one_off_command_leaves_checkpoints_to_sqlite(rt):
    before = len(checkpointers())
    for _ in range(10):
        rt.trigger("noop")
    assert len(checkpointers()) == before
    with rt.db.statement() as writer:
        assert autocheckpoint(writer) == 1000


def test_a_worker_takes_over_the_thread_and_hands_checkpoints_back(rt):
    """A worker starting in a process that already checkpoints in the background keeps that one
    thread; when the worker stops it (`stop_checkpointer`), commits checkpoint again."""
    before = len(checkpointers())
    for _ in range(dbmod.BACKGROUND_CHECKPOINTS_AFTER):
        rt.trigger("noop")
    started = checkpointers()
    assert len(started) == before + 1
    assert rt.db.checkpoint_in_background() is not None
    assert checkpointers() == started
    with rt.db.statement() as writer:
        assert autocheckpoint(writer) == 0

    rt.db.stop_checkpointer()
    assert len(checkpointers()) == before
    for _ in range(3):  # not enough writes to switch again right away
        rt.trigger("noop")
    with rt.db.statement() as writer:
        assert autocheckpoint(writer) == 1000

    assert rt.db.checkpoint_in_background() is not None  # as a worker starts: at once
    assert len(checkpointers()) == before + 1
    with rt.db.statement() as writer:
        assert autocheckpoint(writer) == 0


def test_a_forced_checkpoint_never_holds_writers_off_for_an_old_readers_sake(
    sqlite_url, monkeypatch
):
    """A WAL past WAL_FORCE_BYTES is checkpointed with TRUNCATE, which waits for readers of
    older snapshots (a backup, `db copy`, a long report) while holding off every new writer.
    It waits FORCE_WAIT_S at most, then puts the next try off (1 s, doubling): writers in
    other processes go on. With the database's 30 s busy timeout it held them off that long,
    every 0.1 s, for as long as the reader lasted. Once the reader is gone, the WAL is
    truncated."""
    import sqlite3

    monkeypatch.setattr(dbmod, "WAL_CHECKPOINT_BYTES", 1)
    monkeypatch.setattr(dbmod, "WAL_FORCE_BYTES", 1)  # every round forces
    db = dbmod.Database(sqlite_url)
    path = db.path
    with db.borrow() as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.execute("INSERT INTO t VALUES (0)")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)  # an old snapshot, held
    writer = sqlite3.connect(path, timeout=2.0, isolation_level=None)  # another process's writes
    checkpointer = dbmod.Checkpointer(db, interval=0.01)
    try:
        deadline = time.monotonic() + 60
        written = 0
        while getattr(checkpointer, "_force_pause", 0) < 2.0:  # until refused twice (1 s, 2 s)
            assert time.monotonic() < deadline, "no forced checkpoint was tried"
            writer.execute("INSERT INTO t VALUES (?)", (written,))  # within 2 s, or "locked"
            written += 1
        assert Path(f"{path}-wal").stat().st_size > 0
        reader.execute("COMMIT")  # the reader goes: the next forced checkpoint truncates
        deadline = time.monotonic() + 30
        while Path(f"{path}-wal").stat().st_size > 0 or checkpointer._force_pause > 0:
            assert time.monotonic() < deadline, "the WAL was never truncated"
            time.sleep(0.05)  # (the thread truncates the file, then clears the pause)
    finally:
        checkpointer.stop()
        reader.close()
        writer.close()
        db.close()
