"""`flowjobs db copy`: a SQLite database with runs, logs, schedules, an inbox event and billing
rows moves into PostgreSQL with every row, and the copy works there."""

from __future__ import annotations

import base64
import json
import os

from flowjobs.billing import setup
from flowjobs.billing.models import BillingRun, Subscription
from flowjobs.billing.types import utc_from_ms
from flowjobs.core.client import TriggerItem
from flowjobs.runtime import Runtime
from tests.billing_helpers import drain
from tests.cli_helpers import cli_env, flowjobs
from tests.conftest import make_settings, new_pg_database


def filled(url, tmp_path, clock):
    rt = Runtime(make_settings(url, tmp_path), clock=clock)
    rt.client.batch_trigger([TriggerItem("hello-world", {"n": i}) for i in range(5)])
    drain(rt)  # completed runs with attempts and log lines
    rt.trigger("noop", delay=3600)  # one still waiting
    rt.store.schedule_states()  # (touch) the schedule table exists either way
    now = utc_from_ms(clock.now_ms())
    with rt.billing.unit() as s:
        org = setup.organization(s, "Łódź Analytics", currency="PLN")
        cust = setup.customer(
            s,
            org,
            email="ada@example.com",
            name="Ada",
            billing_address={"address": {"city": "Łódź"}},
        )
        method = setup.card(s, cust, stripe_payment_method_id="pm_1")
        sub, _, run = setup.subscription(
            s, cust, setup.plan(s, org, "Pro", 4900), method, start=now
        )
        ids = {"sub": sub.id, "run": run.id}
    return rt, ids


def test_sqlite_to_postgresql_keeps_every_row(sqlite_url, pg_template, tmp_path, clock):
    rt, ids = filled(sqlite_url, tmp_path, clock)
    target = new_pg_database(pg_template)
    env = cli_env(sqlite_url)
    result = flowjobs("db", "copy", "--to", target, env=env)
    assert result.returncode == 0, result.stderr
    counts = dict(line.split("\t") for line in result.stdout.splitlines())
    assert (
        counts["flowjobs_runs"] == "6"
        and int(counts["flowjobs_logs"]) >= 5
        and counts["subscriptions"] == "1"
    )
    assert "row counts verified" in result.stderr

    moved = Runtime(make_settings(target, tmp_path), clock=clock)
    assert (
        moved.store.count_by_status()
        == rt.store.count_by_status()
        == {"completed": 5, "delayed": 1}
    )
    for run in rt.store.list_runs(limit=10):
        assert moved.store.get_run(run["id"]) == run
        assert moved.store.attempts(run["id"]) == rt.store.attempts(run["id"])
    with rt.billing.unit() as s, moved.billing.unit() as t:
        for model, key in ((Subscription, "sub"), (BillingRun, "run")):
            assert t.get(model, ids[key]).model_dump() == s.get(model, ids[key]).model_dump()
        assert t.get(Subscription, ids["sub"]).start_date.tzinfo is not None
    clock.advance(3601)
    drain(moved)  # the copy is a working database: the waiting run runs there
    assert moved.store.count_by_status() == {"completed": 6}
    moved.trigger("hello-world", {"after": "copy"})  # new log ids continue after the copied ones
    drain(moved)
    assert json.loads(moved.store.list_runs(task="hello-world", limit=1)[0]["payload"]) == {
        "after": "copy"
    }

    again = flowjobs("db", "copy", "--to", target, env=env)
    assert again.returncode == 2 and "already has rows in flowjobs_runs" in again.stderr
    assert flowjobs("db", "copy", "--to", "mysql://x", env=env).returncode == 2
    rt.close()
    moved.close()


def test_a_nul_character_stored_by_an_earlier_version_is_copied_as_x00(
    sqlite_url, pg_template, tmp_path, clock
):
    # SQLite holds a NUL in text, and flowjobs once stored a task's error and log lines as they
    # came; PostgreSQL's text cannot hold one, so the whole copy used to fail
    import sqlite3

    from flowjobs.ops.copy import copy_database

    rt = Runtime(make_settings(sqlite_url, tmp_path), clock=clock)
    run = rt.trigger("noop")
    rt.store.add_log(run.id, 0, clock.now_ms(), "info", "fine")
    rt.close()
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE flowjobs_runs SET error = 'bad' || char(0) || 'byte'")
        conn.execute("UPDATE flowjobs_logs SET message = 'a' || char(0) || 'b'")
    target = new_pg_database(pg_template)
    counts = copy_database(sqlite_url, target)
    assert counts["flowjobs_runs"] == 1 and counts["flowjobs_logs"] == 1
    moved = Runtime(make_settings(target, tmp_path), clock=clock)
    try:
        assert moved.store.get_run(run.id)["error"] == "bad\\x00byte"
        assert [line["message"] for line in moved.store.logs(run.id)] == ["a\\x00b"]
    finally:
        moved.close()


def test_to_takes_what_database_takes(sqlite_url, pg_template, tmp_path, clock):
    """`--to` reads a URL as `--database` does: `postgres://` and `postgresql://` are
    PostgreSQL (they were "unsupported database URL", exit 4), a plain path is an SQLite file
    from the working directory, and another kind of URL is exit 2 with --database's message."""
    rt, _ = filled(sqlite_url, tmp_path, clock)
    rt.close()
    env = cli_env(sqlite_url)
    import sqlite3

    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:  # the app's own table
        conn.execute("CREATE TABLE welcomes (customer_id TEXT)")

    down = flowjobs("db", "copy", "--to", "postgres://u@127.0.0.1:1/db", env=env)
    assert down.returncode == 4, down.stderr
    assert down.stderr.startswith(
        "error: database postgresql+psycopg://u@127.0.0.1:1/db is unavailable: cannot connect"
    )
    assert "unsupported" not in down.stderr and down.stderr.count("\n") == 1

    target = new_pg_database(pg_template)  # postgresql+psycopg://…, written as libpq writes it
    short = target.replace("postgresql+psycopg://", "postgres://", 1)
    copied = flowjobs("db", "copy", "--to", short, env=env)
    assert copied.returncode == 0, copied.stderr
    assert "flowjobs_runs\t6" in copied.stdout.splitlines()
    # it was left behind without a word, after "copied … row counts verified"
    assert "not copied: welcomes (it is not flowjobs' own)" in copied.stderr
    moved = Runtime(make_settings(target, tmp_path), clock=clock)
    try:
        assert moved.store.count_by_status() == {"completed": 5, "delayed": 1}
    finally:
        moved.close()

    (tmp_path / "here").mkdir()
    to_file = flowjobs("db", "copy", "--to", "copy.db", env=env, cwd=tmp_path / "here")
    assert to_file.returncode == 0, to_file.stderr
    assert (tmp_path / "here" / "copy.db").is_file()

    other = flowjobs("db", "copy", "--to", "mysql://x", env=env)
    assert other.returncode == 2
    assert other.stderr == (
        "error: invalid --to:\n"
        "  --to: 'mysql://x' must be sqlite:///PATH, a file path, or "
        "postgresql+psycopg://user@host/db\n"
    )
    as_option = flowjobs("--database", "mysql://x", "runs", "list", env=env)
    assert as_option.returncode == 2
    assert as_option.stderr == other.stderr.replace("--to", "--database")


def test_a_failure_of_the_target_names_the_target(sqlite_url, pg_template, tmp_path):
    """An SQLite database made before keys were limited to 500 characters can hold one that
    PostgreSQL's index refuses. The copy fails whole, and the message names PostgreSQL, the
    database that refused, not the SQLite file the command read (as it used to)."""
    import sqlite3

    rt = Runtime(make_settings(sqlite_url, tmp_path))
    rt.trigger("noop", idempotency_key="short")
    rt.close()
    path = sqlite_url[len("sqlite:///") :]
    with sqlite3.connect(path) as conn:  # what an older flowjobs let in
        key = base64.b64encode(os.urandom(6000)).decode()  # random: PostgreSQL cannot compress it
        conn.execute("UPDATE flowjobs_runs SET idempotency_key = ?", (key,))
    target = new_pg_database(pg_template).replace("postgres@", "postgres:s3cret@")
    result = flowjobs("db", "copy", "--to", target, env=cli_env(sqlite_url))
    assert result.returncode == 4, result.stderr
    shown = target.replace(":s3cret@", ":***@")
    assert result.stderr.startswith(f"error: database {shown} refused a value too large"), (
        result.stderr
    )
    assert path not in result.stderr and "s3cret" not in result.stderr
    moved = Runtime(make_settings(target, tmp_path))
    assert moved.store.count_by_status() == {}  # all or nothing
    moved.close()


def test_copy_is_refused_while_a_worker_is_alive_and_into_a_missing_folder(sqlite_url, tmp_path):
    """A worker alive on the source would go on writing there after the copy (schedule slots,
    new runs): refused until it stops. A target in a folder that does not exist (or under a
    file) is one line and exit 4, as `db upgrade` says it (it was "unexpected FileNotFoundError")."""
    import signal

    from tests.cli_helpers import start_worker, wait_until

    env = cli_env(sqlite_url)
    worker = start_worker("--no-scheduler", env=env, stderr_path=tmp_path / "worker.log")
    try:
        wait_until(
            lambda: any(
                w["state"] == "alive"
                for w in json.loads(flowjobs("workers", "--json", env=env).stdout or "[]")
            ),
            message="the worker to be alive",
        )
        refused = flowjobs("db", "copy", "--to", str(tmp_path / "copy.db"), env=env)
        assert refused.returncode == 2, refused.stderr
        assert "1 worker was seen alive on the source in the last 30 s" in refused.stderr
        assert not (tmp_path / "copy.db").exists()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    done = flowjobs("db", "copy", "--to", str(tmp_path / "copy.db"), env=env)
    assert done.returncode == 0, done.stderr

    (tmp_path / "a-file").write_text("x")
    for target, why in [
        (
            tmp_path / "no" / "such" / "copy.db",
            f"directory {tmp_path / 'no' / 'such'} does not exist",
        ),
        (tmp_path / "a-file" / "copy.db", f"{tmp_path / 'a-file'} is a file, not a folder"),
    ]:
        result = flowjobs("db", "copy", "--to", str(target), env=env)
        assert result.returncode == 4, result.stderr
        assert result.stderr == f"error: cannot open database {target}: {why}\n"
