"""What a run costs the SQLite WAL: pages written per trigger and per claim + finish.

Every B-tree a write touches (the table, its primary key, each index whose entry changes) is a
page appended to the WAL at commit, and those pages are most of a commit's cost on SQLite
(docs/benchmarks.md). These tests count them, so an index added to the hot path shows up here
as a failure, not months later as a slower benchmark. Not timed: frames are counted.
"""

from pathlib import Path

import pytest

from flowjobs.runtime import Runtime
from tests.conftest import make_settings

RUNS = 40
LEASE = 30_000


def wal_frames(path: Path) -> int:
    wal = Path(f"{path}-wal")
    if not wal.exists():
        return 0
    return max(0, (wal.stat().st_size - 32) // (4096 + 24))  # WAL header; frame header + page


@pytest.fixture
def sqlite_rt(sqlite_url, clock, tmp_path):
    rt = Runtime(make_settings(sqlite_url, tmp_path), clock=clock)
    for _ in range(RUNS):
        rt.trigger("noop")  # the schema is in place, the tree has more than its root page
    yield rt, Path(sqlite_url.removeprefix("sqlite:///"))
    rt.close()


def pages_per_run(rt, path: Path, write) -> float:
    with rt.db.borrow() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    for i in range(RUNS):
        write(i)
    return wal_frames(path) / RUNS


# Measured: 6.1 pages per trigger (the table, its primary key, the claim, next-due, created and
# task + created indexes; 9.1 before the key and parent indexes became partial), 8.1 with a
# key, 4 per claim, 3 per finish. The bounds leave room for page splits (a few a run of 40).


def test_a_trigger_without_key_or_parent_writes_no_key_or_parent_index(sqlite_rt):
    rt, path = sqlite_rt
    assert pages_per_run(rt, path, lambda i: rt.trigger("noop")) < 7


def test_a_trigger_with_a_key_writes_the_key_indexes(sqlite_rt):
    rt, path = sqlite_rt
    plain = pages_per_run(rt, path, lambda i: rt.trigger("noop"))
    keyed = pages_per_run(rt, path, lambda i: rt.trigger("noop", idempotency_key=f"k{i}"))
    assert 1.5 < keyed - plain < 2.5  # dedup + idempotency: the dedup check needs its entry


def test_a_claim_and_a_finish_write_four_and_three_pages(sqlite_rt, clock):
    rt, path = sqlite_rt
    claimed = []

    def claim(_):
        claimed.extend(rt.store.claim("w", 1, ["*"], {}, clock.now_ms(), LEASE))

    def finish(i):
        now = clock.now_ms()
        assert rt.store.finish(
            claimed[i],
            status="completed",
            outcome="succeeded",
            worker="w",
            now=now,
            started_at=now,
        )

    # claim: the table, out of the claim and next-due indexes, into the leases index
    assert pages_per_run(rt, path, claim) < 5
    assert len(claimed) == RUNS
    # finish: the table, out of the leases index, into the finished index
    assert pages_per_run(rt, path, finish) < 4
