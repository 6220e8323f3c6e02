"""What a run costs the SQLite WAL: pages written per trigger and per claim + finish.

Every B-tree a write touches (the table, its primary key, each index whose entry changes) is a
page appended to the WAL at commit, and those pages are most of a commit's cost on SQLite
(docs/benchmarks.md). These tests count them, so an index added to the hot path shows up here
as a failure, not months later as a slower benchmark. Not timed: frames are counted.
"""

from pathlib import Path

import pytest

from flowjobs.core.client import TriggerItem
from flowjobs.runtime import Runtime
from tests.conftest import make_settings

RUNS = 40
LEASE = 30_000


def wal_frames(path: Path) -> int:
    wal = Path(f"{path}-wal")
    if not wal.exists():
        return 0
    with open(wal, "rb") as f:
        header = f.read(32)
    page_size = int.from_bytes(header[8:12], "big")  # as this database has them (2 KB: new)
    return max(0, (wal.stat().st_size - 32) // (page_size + 24))  # WAL header; frame header


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


# Measured: 5.1 pages per trigger (the table, its primary key, the claim, created and task +
# created indexes; 9.1 before the key and parent indexes became partial, 6.1 before the
# next-due index went), 7.1 with a key, 3 per claim, 3 per finish. The bounds leave room for
# page splits (a few a run of 40). With the 2 KB pages of a new database: 5.35, 7.6, 3.2, 3 —
# about as many pages, each half the bytes.


def test_a_new_sqlite_database_has_2_kb_pages_and_an_older_one_keeps_its_own(tmp_path, clock):
    import sqlite3

    older = tmp_path / "older.db"
    conn = sqlite3.connect(older)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("CREATE TABLE made_by_an_older_flowjobs (x)")
    conn.close()
    for path, size in ((tmp_path / "new.db", 2048), (older, 4096)):
        rt = Runtime(make_settings(f"sqlite:///{path}", tmp_path), clock=clock)
        try:
            run = rt.trigger("noop")
            assert rt.store.get_run(run.id)["status"] == "queued"
            with rt.db.borrow() as conn:
                assert conn.execute("PRAGMA page_size").fetchone()[0] == size
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            rt.close()


def test_a_trigger_without_key_or_parent_writes_no_key_or_parent_index(sqlite_rt):
    rt, path = sqlite_rt
    assert pages_per_run(rt, path, lambda i: rt.trigger("noop")) < 6


def test_a_trigger_with_a_key_writes_the_key_indexes(sqlite_rt):
    rt, path = sqlite_rt
    plain = pages_per_run(rt, path, lambda i: rt.trigger("noop"))
    keyed = pages_per_run(rt, path, lambda i: rt.trigger("noop", idempotency_key=f"k{i}"))
    assert 1.5 < keyed - plain < 2.5  # dedup + idempotency: the dedup check needs its entry


def test_a_claim_and_a_finish_write_three_pages_each(sqlite_rt, clock):
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

    # claim: the table, out of the claim index, into the leases index
    assert pages_per_run(rt, path, claim) < 4
    assert len(claimed) == RUNS
    # finish: the table, out of the leases index, into the finished index
    assert pages_per_run(rt, path, finish) < 4


def statements_of(rt, action, connection=None) -> list[str]:
    """What `action` sends to the database on the connection it writes with (`connection`, a
    context manager giving it; by default the one a trigger takes): SQLite's statements
    (trace callback), or PostgreSQL's messages (libpq's protocol trace: each statement's
    Query or Parse; a Query or a Sync ends a round trip)."""
    connection = connection or rt.db.statement
    with connection() as conn:
        if rt.db.dialect == "sqlite":
            sent: list[str] = []
            conn.set_trace_callback(sent.append)
        else:
            trace = open(Path(rt.settings.base_dir) / "libpq.trace", "w+")
            conn.pgconn.trace(trace.fileno())
    try:
        action()
    finally:
        with connection() as conn:
            if rt.db.dialect == "sqlite":
                conn.set_trace_callback(None)
            else:
                conn.pgconn.untrace()
    if rt.db.dialect == "sqlite":
        return sent
    trace.seek(0)
    # a message's line: [timestamp,] direction (F: sent), length, message, its fields (a
    # statement's text may go on over more lines)
    sent_lines = []
    for line in trace.read().splitlines():
        fields = line.split("\t")
        fields = fields[1:] if fields[0] not in ("F", "B") else fields
        if len(fields) >= 3 and fields[0] == "F":
            sent_lines.append(fields[2:] + [""])
    trace.close()
    return [line[1] for line in sent_lines if line[0] in ("Query", "Parse")] + [
        "Sync" for line in sent_lines if line[0] == "Sync"
    ]


def test_a_trigger_is_one_statement_that_commits_itself(rt):
    # BEGIN, INSERT, NOTIFY (PostgreSQL), COMMIT were four round trips; one now (the NOTIFY is
    # part of the insert on PostgreSQL; SQLite wakes workers through the WAL file).
    rt.trigger("noop")
    sent = statements_of(rt, lambda: rt.trigger("noop"))
    inserts = [s for s in sent if "INSERT INTO flowjobs_runs" in s]
    assert len(inserts) == 1
    assert not [s for s in sent if s.strip(' "').upper() in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT")]
    if rt.db.dialect == "postgresql":
        assert "pg_notify" in inserts[0]
        assert sent.count("Sync") == 1  # one round trip
    assert len(rt.store.list_runs(status="queued")) == 2


def test_a_keyed_trigger_still_runs_in_a_transaction(rt):
    rt.trigger("noop")
    sent = statements_of(rt, lambda: rt.trigger("noop", idempotency_key="k"))
    assert any(s.strip(' "').upper().startswith("BEGIN") for s in sent), sent
    again = rt.trigger("noop", idempotency_key="k")
    assert again.deduplicated


def test_a_batch_of_new_keys_sends_its_insert_and_no_key_release(rt, clock):
    # Every keyed run used to send an UPDATE releasing its key, expired or not, before the
    # insert: 500 statements beside the insert of a billing fan-out of 500. A release is now
    # sent only for runs the insert skipped, and only for their keys.
    old = rt.trigger("noop", idempotency_key="expired", idempotency_key_ttl="1m")
    clock.advance(61)

    def other_than_the_insert(sent: list[str]) -> list[str]:
        usual = ("BEGIN", "COMMIT", "SYNC", "INSERT INTO FLOWJOBS_RUNS", "SELECT PG_NOTIFY")
        return [s for s in sent if not s.strip(' "').upper().startswith(usual)]

    fresh = [TriggerItem("noop", idempotency_key=f"k{i}") for i in range(20)]
    sent = statements_of(rt, lambda: rt.client.batch_trigger(fresh))
    assert other_than_the_insert(sent) == []
    assert len([s for s in sent if "INSERT INTO flowjobs_runs" in s]) == 1
    again = [
        TriggerItem("noop", idempotency_key="expired"),
        TriggerItem("noop", idempotency_key="k0"),
    ]
    sent = statements_of(rt, lambda: rt.client.batch_trigger(again))
    # the release (PostgreSQL: one prepared statement), then the skipped runs inserted again
    assert len([s for s in sent if "INSERT INTO flowjobs_runs" in s]) == 2
    releases = other_than_the_insert(sent)
    if rt.db.dialect == "sqlite":  # traced with their parameters, the dedup lookup too
        released = [s for s in releases if "SET dedup_key = NULL" in s]
        assert len(released) == 2 and any("'expired'" in s for s in released)
    # (PostgreSQL's trace shows a prepared statement's text on lines of its own: there, what
    # tells that the release was sent is the key released below)
    assert rt.store.get_run(old.id)["dedup_key"] is None  # released, and a new run holds it
    assert len(rt.store.list_runs(status="queued")) == 22


def test_a_keyed_batch_insert_on_sqlite_builds_no_temporary_btree(sqlite_rt):
    # RETURNING made SQLite build one in every statement; the change count says whether all
    # rows went in, and the ids are looked up only when some did not.
    rt, _ = sqlite_rt
    keyed = [TriggerItem("noop", idempotency_key=f"k{i}") for i in range(5)]
    sent = statements_of(rt, lambda: rt.client.batch_trigger(keyed))
    assert temporary_btrees(rt, sent) == {"INSERT INTO flowjobs_runs": 0}
    assert not [s for s in sent if s.lstrip().upper().startswith("SELECT")]


@pytest.fixture
def pg_rt(pg_template, clock, tmp_path):
    from tests.conftest import new_pg_database

    rt = Runtime(make_settings(new_pg_database(pg_template), tmp_path), clock=clock)
    yield rt
    rt.close()


def test_a_postgresql_workers_turn_is_one_statement(pg_rt, clock):
    # A turn writes the last outcome and claims the next run: BEGIN, finish, the claim plan,
    # claim, COMMIT went out one after another, five round trips; now one statement.
    from flowjobs.store.jobs import Finish

    rt = pg_rt
    rt.client.batch_trigger([TriggerItem("noop") for _ in range(3)])
    [first] = rt.store.claim("w", 1, ["*"], {}, clock.now_ms(), LEASE)
    now = clock.now_ms()
    done = Finish(
        first, status="completed", outcome="succeeded", worker="w", now=now, started_at=now
    )
    turn = {}

    def take_turn():
        turn["result"] = rt.store.finish_and_claim([done], "w", 2, ["*"], {}, now + 100, LEASE)

    sent = statements_of(rt, take_turn, rt.store._turn_connection)
    written, claimed = turn["result"]
    assert written == [True] and len(claimed) == 2
    assert rt.store.get_run(first.id)["status"] == "completed"
    assert sent.count("Sync") == 1 and len(sent) == 2, sent  # one Parse, one Sync
    # the finished run is stamped with its own time, not the turn's (100 ms later)
    row = rt.store.get_run(first.id)
    assert row["updated_at"] == row["finished_at"] == now
    # eight outcomes at once go as arrays (past 50 parameters with the claim's)
    clock.advance(1)
    rt.client.batch_trigger([TriggerItem("noop") for _ in range(8)])
    more = rt.store.claim("w", 8, ["*"], {}, clock.now_ms(), LEASE)
    ends = [
        Finish(c, status="completed", outcome="succeeded", worker="w", now=now + i, started_at=now)
        for i, c in enumerate(more)
    ]
    assert (
        statements_of(
            rt,
            lambda: turn.update(
                many=rt.store.finish_and_claim(ends, "w", 0, ["*"], {}, now, LEASE)
            ),
            rt.store._turn_connection,
        ).count("Sync")
        == 1
    )
    assert turn["many"] == ([True] * 8, [])
    assert {rt.store.get_run(c.id)["status"] for c in more} == {"completed"}
    # a stale outcome in the same statement is fenced like any other
    stale = Finish(
        first, status="completed", outcome="succeeded", worker="w", now=now, started_at=now
    )
    assert rt.store.finish_and_claim([stale], "w", 1, ["*"], {}, now, LEASE) == ([False], [])


def temporary_btrees(rt, statements: list[str]) -> dict[str, int]:
    """How many temporary B-trees (OP_OpenEphemeral) SQLite builds for each write statement
    (an INSERT or UPDATE, as traced: parameters expanded), by its first words."""
    counts = {}
    with rt.db.borrow() as conn:
        for sql in statements:
            head = " ".join(sql.split()[:3])
            if head.split()[0].upper() not in ("INSERT", "UPDATE"):
                continue
            opcodes = [row[1] for row in conn.execute("EXPLAIN " + sql)]
            counts[head] = counts.get(head, 0) + opcodes.count("OpenEphemeral")
    return counts


def test_sqlites_hot_statements_build_no_temporary_btrees(sqlite_rt, clock):
    """An IN list of 3+ constants, RETURNING, IN (subquery) and UPDATE … FROM each make SQLite
    build a temporary B-tree in every statement (~90 KB allocated and freed; docs/design.md).
    A trigger without key, a claim of one run and the finish of one build none but the claim's
    RETURNING — including the ones the waiting and finished indexes' conditions would cost
    (revision 0013 spells them as OR chains)."""
    rt, _ = sqlite_rt
    trigger = statements_of(rt, lambda: rt.trigger("noop"))
    assert temporary_btrees(rt, trigger) == {"INSERT INTO flowjobs_runs": 0}

    claimed = []
    claim = statements_of(
        rt, lambda: claimed.extend(rt.store.claim("w", 1, ["*"], {}, clock.now_ms(), LEASE))
    )
    assert len(claimed) == 1
    assert temporary_btrees(rt, claim) == {"UPDATE flowjobs_runs SET": 1}  # its RETURNING

    # the lean finish (completed) and the full one (retrying, with its attempt row)
    for status, outcome, expected in (
        ("completed", "succeeded", {"UPDATE flowjobs_runs SET": 0}),
        ("retrying", "failed", {"UPDATE flowjobs_runs SET": 0, "INSERT INTO flowjobs_attempts": 0}),
    ):
        now = clock.now_ms()
        run = claimed.pop()
        finish = statements_of(
            rt,
            lambda: rt.store.finish(
                run,
                status=status,
                outcome=outcome,
                worker="w",
                now=now,
                started_at=now,
                retry_at=now if status == "retrying" else None,
            ),
        )
        assert temporary_btrees(rt, finish) == expected
        assert rt.store.get_run(run.id)["status"] == status
        claimed.extend(rt.store.claim("w", 1, ["*"], {}, clock.now_ms(), LEASE))
