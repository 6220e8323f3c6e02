"""The worker and executor against real databases (both backends), with a pinned clock."""

import json
import threading
import time

from flowjobs.core.worker import Worker


def worker(rt, **options) -> Worker:
    return rt.make_worker(rt.worker_options(**{"lease": 30.0, **options}), worker_id="w-test")


def step(w: Worker):
    """One claim pass, then wait for what it started to settle."""
    claimed, _ = w.run_once()
    assert w.wait_idle(10)
    return claimed


def test_success_records_result_attempt_and_logs(rt):
    run = rt.trigger("hello-world", {"greeting": "hi"})
    step(worker(rt))
    row = rt.store.get_run(run.id)
    assert row["status"] == "completed"
    assert json.loads(row["result"]) == {"greeting": "hi"}
    [attempt] = rt.store.attempts(run.id)
    assert attempt["outcome"] == "succeeded" and attempt["worker"] == "w-test"
    assert [line["message"] for line in rt.store.logs(run.id)] == [f"hello from run {run.id}"]


def test_failure_is_retried_after_backoff_then_succeeds(rt, clock):
    run = rt.trigger("test-fail-once")  # 3 attempts, 1s -> 10s, factor 2, no jitter
    w = worker(rt)
    step(w)
    row = rt.store.get_run(run.id)
    assert row["status"] == "retrying"
    assert row["run_at"] == clock.now_ms() + 1000
    assert "first attempt fails" in rt.store.attempts(run.id)[0]["traceback"]
    clock.advance(0.999)
    assert step(w) == []  # not due yet
    clock.advance(0.001)
    step(w)
    row = rt.store.get_run(run.id)
    assert row["status"] == "completed" and json.loads(row["result"]) == {"attempt": 2}
    assert [a["outcome"] for a in rt.store.attempts(run.id)] == ["failed", "succeeded"]


def test_attempts_exhausted_fail_the_run_and_release_its_key(rt, clock):
    run = rt.trigger("test-always-fail", idempotency_key="k")  # 2 attempts, no wait
    w = worker(rt)
    step(w)
    step(w)
    row = rt.store.get_run(run.id)
    assert row["status"] == "failed" and row["error"] == "ValueError: always"
    assert rt.trigger("test-always-fail", idempotency_key="k").id != run.id


def test_a_nul_byte_in_an_error_or_a_log_line_is_recorded_not_lost(rt):
    # PostgreSQL's text cannot hold a NUL: the outcome could not be written, the run stayed
    # executing until its lease expired, and the rescuer ran it again as a crash
    run = rt.trigger("test-nul-bytes")
    ok = rt.trigger("noop")
    step(worker(rt))
    row = rt.store.get_run(run.id)
    assert row["status"] == "failed"
    assert row["error"] == "ValueError: a message with a NUL \\x00 byte"
    [attempt] = rt.store.attempts(run.id)
    assert attempt["error"] == row["error"] and attempt["outcome"] == "failed"
    assert "\\x00" in attempt["traceback"] and "\x00" not in attempt["traceback"]
    assert [log["message"] for log in rt.store.logs(run.id)] == ["a log line with a NUL \\x00 byte"]
    assert rt.store.get_run(ok.id)["status"] == "completed"
    # its failure hook is given the error as the run's row has it
    [hook] = [r for r in rt.store.list_runs(task="test-on-failure") if r["parent_id"] == run.id]
    step(worker(rt))
    assert json.loads(rt.store.get_run(hook["id"])["result"])["error"] == row["error"]


POISON = {
    "sqlite": [
        "CREATE TRIGGER poison BEFORE UPDATE ON flowjobs_runs WHEN NEW.error LIKE '%poison%' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN IF NEW.error LIKE '%poison%' THEN "
        "RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER poison BEFORE UPDATE ON flowjobs_runs FOR EACH ROW "
        "EXECUTE FUNCTION poison()",
    ],
}


def test_an_outcome_that_cannot_be_written_does_not_lose_the_others(rt, caplog):
    # A database trigger refuses to record one run's failure: the turn's write fails as a
    # whole, then each outcome is written alone; the refused run is left to the rescuer.
    with rt.db.transaction() as conn:
        for sql in POISON[rt.db.dialect]:
            conn.execute(sql)
    bad = rt.trigger("test-poison")
    good = [rt.trigger("noop") for _ in range(3)]
    w = worker(rt, concurrency=4)
    claimed, _ = w.run_once()
    assert len(claimed) == 4
    deadline = time.monotonic() + 10
    while w._outbox.qsize() < 4:  # all four settled: the next write takes them together
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert w.wait_idle(10)
    assert rt.store.get_run(bad.id)["status"] == "executing"  # its lease will expire
    assert {rt.store.get_run(r.id)["status"] for r in good} == {"completed"}
    messages = [r.getMessage() for r in caplog.records]
    assert any("writing 4 outcome(s) with a claim failed" in m for m in messages)
    assert any(f"run {bad.id}: could not record attempt 1" in m for m in messages)


def test_a_stored_payload_that_no_longer_validates_fails_the_run_at_once(rt):
    # e.g. the task's model changed after the run was queued: retrying cannot help
    run = rt.trigger("test-sleep", {"seconds": 0})
    with rt.db.transaction() as conn:
        conn.execute(
            rt.store._prepare("UPDATE flowjobs_runs SET payload = :p WHERE id = :id"),
            {"p": '{"seconds": "soon"}', "id": run.id},
        )
    step(worker(rt))
    row = rt.store.get_run(run.id)
    assert row["status"] == "failed" and row["attempt"] == 1
    assert row["error"].startswith("payload is not valid for 'test-sleep'")
    assert "seconds" in row["error"]
    assert [a["outcome"] for a in rt.store.attempts(run.id)] == ["failed"]  # one attempt only


def test_abort_fails_at_once(rt):
    run = rt.trigger("test-abort")  # policy allows 3 attempts
    step(worker(rt))
    row = rt.store.get_run(run.id)
    assert row["status"] == "failed" and row["attempt"] == 1
    assert row["error"] == "AbortTaskRunError: customer not found"


def test_system_exit_and_unserialisable_result_do_not_kill_the_worker(rt):
    exits = rt.trigger("test-exit")
    bad = rt.trigger("test-unserializable")
    ok = rt.trigger("noop")
    step(worker(rt))
    assert rt.store.get_run(exits.id)["error"] == "SystemExit: 3"
    assert rt.store.get_run(exits.id)["status"] == "failed"
    assert "not JSON-serialisable" in rt.store.get_run(bad.id)["error"]
    assert rt.store.get_run(bad.id)["status"] == "failed"
    assert rt.store.get_run(ok.id)["status"] == "completed"


def test_timeout_ends_the_attempt_and_frees_the_slot(rt):
    slow = rt.trigger("test-sleep", {"seconds": 5})  # task timeout 300ms
    w = worker(rt, concurrency=1, timeout_grace=0.5)
    started = time.monotonic()
    step(w)
    assert time.monotonic() - started < 4  # abandoned after its grace: no task wedges a slot
    row = rt.store.get_run(slow.id)
    assert row["status"] == "failed"
    assert "did not stop within 0.5s and was abandoned" in row["error"]
    assert [a["outcome"] for a in rt.store.attempts(slow.id)] == ["timed_out"]
    quick = rt.trigger("noop")
    step(w)
    assert rt.store.get_run(quick.id)["status"] == "completed"


def test_cancel_of_an_executing_run_stops_it(rt, tmp_path):
    run = rt.trigger("test-block", {"dir": str(tmp_path)})
    w = worker(rt, lease=0.6)  # heartbeat every 0.2s
    w.run_once()
    assert rt.store.cancel(run.id, rt.clock.now_ms()) == "requested"
    assert w.wait_idle(10)
    assert rt.store.get_run(run.id)["status"] == "canceled"
    assert [a["outcome"] for a in rt.store.attempts(run.id)] == ["canceled"]
    assert not (tmp_path / "completed.log").exists()


def test_child_trigger_commits_with_the_tasks_transaction(rt):
    kept = rt.trigger("test-child")
    dropped = rt.trigger("test-child", {"fail_after_trigger": True})
    step(worker(rt))
    children = rt.store.list_runs(parent_id=kept.id)
    assert [(c["task"], json.loads(c["payload"])) for c in children] == [
        ("hello-world", {"from": kept.id})
    ]
    assert rt.store.list_runs(parent_id=dropped.id) == []
    assert rt.store.get_run(dropped.id)["status"] == "failed"


def test_queue_limit_holds_with_several_workers(make_runtime):
    from tests import tasks_for_tests

    tasks_for_tests._active.update(now=0, max=0)
    runtimes = [make_runtime(pinned=False) for _ in range(3)]
    from flowjobs.core.client import TriggerItem

    runtimes[0].client.batch_trigger([TriggerItem("test-limited") for _ in range(12)])
    workers = [
        r.make_worker(r.worker_options(concurrency=5, burst=True, poll_interval=0.01))
        for r in runtimes
    ]
    threads = [threading.Thread(target=w.run) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert runtimes[0].store.count_by_status() == {"completed": 12}
    assert tasks_for_tests._active["max"] == 2


def test_burst_worker_drains_and_exits(make_runtime):
    rt = make_runtime(pinned=False)
    from flowjobs.core.client import TriggerItem

    rt.client.batch_trigger([TriggerItem("test-child") for _ in range(100)])
    w = rt.make_worker(rt.worker_options(concurrency=4, burst=True))
    assert w.run() == 0
    assert rt.store.count_by_status() == {"completed": 200}  # 100 parents, 100 children
    # one thread per run, but connections come from a bounded pool, not one per thread
    assert rt.db.opened <= 4 + 4


def test_max_jobs_stops_after_that_many_runs(make_runtime):
    rt = make_runtime(pinned=False)
    from flowjobs.core.client import TriggerItem

    rt.client.batch_trigger([TriggerItem("noop") for _ in range(10)])
    w = rt.make_worker(rt.worker_options(concurrency=2, max_jobs=3))
    assert w.run() == 0
    assert rt.store.count_by_status() == {"completed": 3, "queued": 7}


def test_one_unwritable_outcome_does_not_lose_the_rest_of_its_batch(rt):
    from flowjobs.core.client import TriggerItem

    # A failed attempt writes an attempt row (a succeeded one lives in its run row), so a
    # failing run whose attempt-1 row already exists poisons the batch write.
    poisoned, *others = rt.client.batch_trigger(
        [TriggerItem("test-always-fail")] + [TriggerItem("noop") for _ in range(4)]
    )
    with rt.db.transaction() as conn:  # an attempt row that will collide with attempt 1
        conn.execute(
            rt.store._prepare(
                "INSERT INTO flowjobs_attempts (run_id, number, finished_at, outcome) VALUES (:id, 1, 0, 'x')"
            ),
            {"id": poisoned.id},
        )
    step(worker(rt))
    assert [rt.store.get_run(r.id)["status"] for r in others] == ["completed"] * 4
    assert rt.store.get_run(poisoned.id)["status"] == "executing"  # left to the rescuer


def test_an_idle_worker_sleeps_instead_of_spinning(rt):
    # Nothing to run: each turn finds nothing and the loop should sleep until a run is due,
    # a wake-up or its idle limit. (A turn that nudged its own wake-up once spun a core.)
    w = worker(rt)
    turns = []
    original = w.run_once
    w.run_once = lambda: turns.append(1) or original()
    thread = threading.Thread(target=w.run)
    thread.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and len(turns) < 1000:
            time.sleep(0.05)
    finally:
        w.stop()
        thread.join(10)
    assert 1 <= len(turns) < 50


def test_a_run_still_executing_past_the_shutdown_timeout_is_given_back(rt, clock, tmp_path):
    """It was "left to the rescuer": no worker ran it again until its lease ran out (30 s here,
    a minute by default), and its attempt then read "worker lost its lease (crashed …)". It is
    due again 15 s later, once the stopping process is surely gone (its task thread cannot be
    stopped), and the task is told it was canceled."""
    from flowjobs.core.worker import GIVE_BACK_DELAY_MS
    from tests.cli_helpers import wait_until

    run = rt.trigger("test-block", {"dir": str(tmp_path)})
    w = worker(rt, shutdown_timeout=0.2)
    thread = threading.Thread(target=w.run)
    thread.start()
    try:
        wait_until(lambda: list(tmp_path.glob("*.started")), message="the task to start")
        w.stop()
        thread.join(10)
        assert not thread.is_alive()
        row = rt.store.get_run(run.id)
        assert (row["status"], row["crashes"], row["lease_expires_at"]) == ("retrying", 1, None)
        assert row["run_at"] == clock.now_ms() + GIVE_BACK_DELAY_MS == clock.now_ms() + 15_000
        [attempt] = rt.store.attempts(run.id)
        assert attempt["outcome"] == "crashed"
        assert attempt["error"] == "worker stopped past its shutdown timeout (0.2s)"
        again = worker(rt)
        assert again.run_once()[0] == []  # not beside the old task thread
        clock.advance(15)
        assert [r.id for r in again.run_once()[0]] == [run.id]  # then by any worker
        (tmp_path / "release").touch()
        assert again.wait_idle(10) and rt.store.get_run(run.id)["status"] == "completed"
    finally:
        (tmp_path / "release").touch()


def test_a_turn_retried_after_a_blip_reads_the_clock_again(rt, clock, tmp_path):
    """A turn retried on a transient error (for up to 5 s) kept its first clock reading: the
    runs it claimed had leases that many seconds shorter, and finishes stamped early."""
    from flowjobs.errors import DatabaseLocked

    run = rt.trigger("test-block", {"dir": str(tmp_path)})
    w = worker(rt)
    original = rt.store.finish_and_claim

    def blip_once(*args, **kwargs):
        rt.store.finish_and_claim = original
        clock.advance(3)  # the time the first try took
        raise DatabaseLocked("database is locked")

    rt.store.finish_and_claim = blip_once
    try:
        assert [r.id for r in w.run_once()[0]] == [run.id]
        assert rt.store.get_run(run.id)["lease_expires_at"] == clock.now_ms() + 30_000
    finally:
        rt.store.finish_and_claim = original
        (tmp_path / "release").touch()
    assert w.wait_idle(10)


def test_an_import_error_is_a_crash_and_uses_no_attempt(rt, clock):
    run = rt.trigger("test-import-error")  # one attempt only
    w = rt.make_worker(rt.worker_options(lease=30.0, max_crashes=3), worker_id="w-test")
    step(w)
    row = rt.store.get_run(run.id)
    assert (row["status"], row["crashes"], row["attempt"]) == (
        "retrying",
        1,
        1,
    )  # its attempt is intact
    assert (
        row["run_at"] == clock.now_ms() + 1000
    )  # a short back-off: the module may import next time
    [attempt] = rt.store.attempts(run.id)
    assert attempt["outcome"] == "crashed" and "ModuleNotFoundError" in attempt["error"]
    for crashes, delay in ((2, 2), (3, 4)):
        clock.advance(delay)
        step(w)
        assert rt.store.get_run(run.id)["crashes"] == crashes
    row = rt.store.get_run(run.id)
    assert row["status"] == "failed"  # the crash budget, not the attempts, stopped it
    assert [a["outcome"] for a in rt.store.attempts(run.id)] == ["crashed"] * 3


def test_a_run_that_fails_for_good_triggers_its_failure_hook_once(rt):
    run = rt.trigger("test-fail-hooked", {"invoice": "inv_1"})
    w = worker(rt)
    step(w)
    assert rt.store.get_run(run.id)["status"] == "failed"
    [hook] = [r for r in rt.store.list_runs(task="test-on-failure")]
    assert hook["idempotency_key"] == f"on-failure:{run.id}" and hook["parent_id"] == run.id
    step(w)
    result = json.loads(rt.store.get_run(hook["id"])["result"])
    assert result == {
        "of": run.id,
        "task": "test-fail-hooked",
        "payload": {"invoice": "inv_1"},
        "error": "ValueError: the card was declined",
    }


def test_a_run_whose_crash_budget_runs_out_in_the_rescuer_triggers_its_hook(rt, clock):
    run = rt.trigger("test-fail-hooked")
    w = rt.make_worker(rt.worker_options(lease=30.0, max_crashes=1), worker_id="w-test")
    rt.store.claim("w-dead", 1, ["*"], {}, clock.now_ms(), 30_000)  # a worker that then dies
    clock.advance(31)
    step(w)  # the rescuer: the one crash allowed is used up
    assert rt.store.get_run(run.id)["status"] == "failed"
    [hook] = rt.store.list_runs(task="test-on-failure")
    step(w)
    assert (
        json.loads(rt.store.get_run(hook["id"])["result"])["error"]
        == "worker lost its lease (crashed or stalled)"
    )


def test_preloading_a_task_module_imports_what_its_functions_import(tmp_path, monkeypatch):
    """Two task threads importing one package at once can meet its import cycle half-way; the
    worker imports a task's lazy imports first, one task at a time."""
    import sys

    from flowjobs.core.preload import preload

    pkg = tmp_path / "preloadpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tasks.py").write_text(
        "def run():\n    from preloadpkg import helper\n    return helper.go()\n"
    )
    (pkg / "helper.py").write_text(
        "import json\n\ndef go():\n    from preloadpkg.deep import value\n    return value\n"
    )
    (pkg / "deep.py").write_text("value = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = preload(["preloadpkg.tasks"])
    assert {"preloadpkg.helper", "preloadpkg.deep", "json"} <= set(loaded)
    assert sys.modules["preloadpkg.deep"].value == 42
    for name in [m for m in sys.modules if m.startswith("preloadpkg")]:
        del sys.modules[name]


def test_a_task_thread_refills_its_own_slot_without_a_hand_over(make_runtime):
    # At concurrency 1 the thread that ran a task writes its outcome and claims the next run in
    # one transaction and runs it itself (two thread switches per run were most of its cost):
    # most turns are the task thread's, and each run costs one write transaction.
    from flowjobs.core.client import TriggerItem

    rt = make_runtime(pinned=False)
    rt.client.batch_trigger([TriggerItem("noop") for _ in range(200)])
    w = rt.make_worker(rt.worker_options(concurrency=1, burst=True))
    turns, transactions = [], []
    original_turn, original_tx = rt.store.finish_and_claim, rt.db.transaction

    def turn(*args, **kwargs):
        turns.append(threading.current_thread().name)
        return original_turn(*args, **kwargs)

    rt.store.finish_and_claim = turn
    rt.db.transaction = lambda conn=None: transactions.append(conn is None) or original_tx(conn)
    assert w.run() == 0
    assert rt.store.count_by_status() == {"completed": 200}
    assert turns.count("flowjobs-task") > 150  # the loop takes a turn only now and then
    # one per run, + the worker's presence rows and the last claim (nested calls not counted)
    assert sum(transactions) <= 200 + 10


def test_a_worker_without_a_tasks_module_leaves_its_runs_to_a_worker_that_has_it(
    make_runtime, clock
):
    """A worker deployed without a task's module (a stale unit during a rolling deploy) claims
    its run and cannot run it: a crash of that worker, backed off, never an attempt — a worker
    with the module then runs it. (It used to fail the run for good at its first claim.) With
    no such worker the crash budget ends it, naming the missing task."""
    full = make_runtime()
    lacking = make_runtime(tasks={"modules": []}, run={"max_crashes": 3})
    run = full.trigger("test-fail-once")  # fails when ctx.attempt is 1 (the crash is attempt 1)
    stale = lacking.make_worker(lacking.worker_options(lease=30.0), worker_id="w-stale")
    step(stale)
    row = full.store.get_run(run.id)
    assert (row["status"], row["attempt"] - row["crashes"]) == ("retrying", 0)
    [attempt] = full.store.attempts(run.id)
    assert attempt["outcome"] == "crashed" and attempt["worker"] == "w-stale"
    assert "no task 'test-fail-once' is registered in this worker" in attempt["error"]

    assert row["run_at"] == clock.now_ms() + 60_000  # a minute, doubling to an hour
    good = worker(full)
    clock.advance(60)  # past the back-off
    step(good)
    row = full.store.get_run(run.id)
    assert row["status"] == "completed" and json.loads(row["result"]) == {"attempt": 2}
    assert [a["outcome"] for a in full.store.attempts(run.id)] == ["crashed", "succeeded"]

    orphan = full.trigger("test-fail-once")  # and no worker with the module comes
    for _ in range(3):
        step(stale)
        clock.advance(3600)
    row = full.store.get_run(orphan.id)
    assert row["status"] == "failed" and "is registered in this worker" in row["error"]


def test_a_worker_rescues_its_own_run_it_no_longer_runs_but_never_one_in_flight(
    rt, clock, tmp_path
):
    """An outcome that could not be written leaves the run `executing` under the worker's id
    after the worker let it go. Its own rescuer takes it once the lease expires (it skipped
    every run of its own: with one worker, the run stayed `executing` until a restart), while
    a run it is still running, lease expired or not, stays its own."""
    with rt.db.transaction() as conn:  # a database trigger refuses to record its failure
        for sql in POISON[rt.db.dialect]:
            conn.execute(sql)
    poisoned = rt.trigger("test-poison")
    w = worker(rt, concurrency=4)
    step(w)
    assert rt.store.get_run(poisoned.id)["status"] == "executing"
    blocked = rt.trigger("test-block", {"dir": str(tmp_path)})
    assert [r.id for r in w.run_once()[0]] == [blocked.id]  # in flight from now on
    clock.advance(31)  # both leases (30 s) expired
    rescued = w.rescuer.run_once(clock.now_ms())
    assert [r.id for r in rescued] == [poisoned.id]
    row = rt.store.get_run(poisoned.id)
    assert (row["status"], row["crashes"]) == ("retrying", 1)
    assert rt.store.get_run(blocked.id)["status"] == "executing"
    (tmp_path / "release").touch()
    assert w.wait_idle(10)
    assert rt.store.get_run(blocked.id)["status"] == "completed"


def test_a_database_outage_met_inside_a_task_is_a_crash_not_a_used_attempt(rt, clock, tmp_path):
    """A task whose database writes fail for a reason that passes (here: a locked SQLite file;
    in life, ctx.log or a unit of work while PostgreSQL restarts) crashes: back-off, the crash
    budget, never its one attempt, and it succeeds once the lock is gone. A task that turns such
    an error into its own (raised while handling it, not from it) fails as any task error."""
    import sqlite3

    ledger = tmp_path / "ledger.db"
    holder = sqlite3.connect(ledger, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")  # held: every write of the task's is refused
    passing = rt.trigger("test-locked", {"db": str(ledger)})
    wrapped = rt.trigger("test-locked", {"db": str(ledger), "wrap": True})
    w = worker(rt, concurrency=2)
    step(w)
    row = rt.store.get_run(passing.id)
    assert (row["status"], row["crashes"]) == ("retrying", 1)
    [attempt] = rt.store.attempts(passing.id)
    assert attempt["outcome"] == "crashed" and "database is locked" in attempt["error"]
    row = rt.store.get_run(wrapped.id)
    assert row["status"] == "failed" and "the ledger would not take the write" in row["error"]

    holder.execute("COMMIT")
    holder.close()
    clock.advance(2)  # past the crash's back-off (1 s)
    step(w)
    row = rt.store.get_run(passing.id)
    assert row["status"] == "completed" and json.loads(row["result"]) == {"attempt": 2}


def test_lines_logged_while_the_database_is_away_are_kept_and_the_run_is_not_redone(
    sqlite_url, clock, tmp_path
):
    """`ctx.log` during an outage (here an SQLite lock past the busy timeout; a PostgreSQL
    restart in life) raised, and the run crashed and did its work again from the start. The
    lines are kept and written with the outcome, at the times they were logged."""
    import sqlite3

    from flowjobs.runtime import Runtime
    from tests.cli_helpers import wait_until
    from tests.conftest import make_settings

    rt = Runtime(
        make_settings(sqlite_url, tmp_path, database={"busy_timeout": "200ms"}), clock=clock
    )
    try:
        run = rt.trigger("test-log-during-outage", {"dir": str(tmp_path)})
        w = worker(rt)
        w.run_once()
        wait_until(lambda: (tmp_path / "logged").exists(), message="the first line")
        holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # no write gets through until COMMIT
        (tmp_path / "locked").touch()
        wait_until(lambda: (tmp_path / "finished").exists(), message="the task to return")
        holder.execute("COMMIT")
        holder.close()
        assert w.wait_idle(10)
        row = rt.store.get_run(run.id)
        assert (row["status"], row["crashes"]) == ("completed", 0), row["error"]
        assert [a["outcome"] for a in rt.store.attempts(run.id)] == ["succeeded"]
        assert [line["message"] for line in rt.store.logs(run.id)] == ["before", "during", "after"]
        w.stop()
    finally:
        rt.close()


def test_a_task_logs_inside_its_own_transaction_without_waiting_for_itself(make_runtime):
    """On SQLite a task's `ctx.log` inside its `ctx.transaction()` opened a second write
    transaction, which waited for the first — its own — until the busy timeout, and failed the
    task (holding every heartbeat of the process meanwhile). The line is now written after the
    transaction, in order; a `ctx.trigger` there that does not join the transaction is refused
    at once, saying how to join it. On PostgreSQL both simply go on their own connection."""
    rt = make_runtime(database={"busy_timeout": "1s"})
    run = rt.trigger("test-log-in-transaction")
    step(worker(rt))
    row = rt.store.get_run(run.id)
    assert row["status"] == "completed", row["error"]
    assert [line["message"] for line in rt.store.logs(run.id)] == [
        "inside the transaction",
        "after it",
    ]
    refused = json.loads(row["result"])["refused"]
    if rt.db.dialect == "sqlite":
        assert "ctx.trigger inside a transaction of this task on SQLite must join it" in refused
    else:
        assert refused is None
    assert len(rt.store.list_runs(task="noop")) == (1 if rt.db.dialect == "sqlite" else 2)


def test_a_timed_out_task_has_returned_before_its_retry_starts(rt, tmp_path):
    """Past its timeout a task is told to stop and given the grace; its attempt ends when it
    returns. The attempt used to end at the timeout, and the retry ran beside the first
    attempt's still-running code, even at concurrency 1."""
    notes = tmp_path / "overrun.log"
    run = rt.trigger("test-overrun", {"file": str(notes), "seconds": 1.0})  # timeout 300ms
    w = worker(rt, concurrency=1, timeout_grace=5.0)
    for _ in range(10):
        step(w)
        if rt.store.get_run(run.id)["status"] == "failed":
            break
    assert notes.read_text().split("\n")[:-1] == ["start 1", "end 1", "start 2", "end 2"]
    attempts = rt.store.attempts(run.id)
    assert [(a["outcome"], a["error"]) for a in attempts] == [
        ("timed_out", "attempt timed out")
    ] * 2
    assert rt.store.get_run(run.id)["result"] is None  # what it returned late is not kept
