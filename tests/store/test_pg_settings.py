"""PostgreSQL settings a DBA or a managed service may set for flowjobs' role or database, and
that flowjobs must not depend on: the default isolation level and a statement timeout."""

import threading
import time
from datetime import UTC, datetime

import psycopg
from sqlalchemy import text

from flowjobs.store.db import Database
from flowjobs.store.migrate import HEAD, current_revision, upgrade
from flowjobs.store.units import Units
from tests.conftest import new_pg_database


def plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def alter_database(url: str, setting: str) -> None:
    server, name = url.rsplit("/", 1)
    with psycopg.connect(plain(server + "/postgres"), autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} SET {setting}")


def test_sessions_are_read_committed_whatever_the_database_default(pg_template):
    """Claims (SKIP LOCKED) and fenced finishes are written for READ COMMITTED; a database
    whose default is SERIALIZABLE would fail them with "could not serialize access"."""
    url = new_pg_database(pg_template)
    alter_database(url, "default_transaction_isolation = 'serializable'")
    with psycopg.connect(plain(url)) as other:  # what any other client of it gets
        assert other.execute("SHOW transaction_isolation").fetchone()[0] == "serializable"
    db = Database(url)
    try:
        for autocommit in (True, False):
            conn = db.connect(autocommit=autocommit)
            try:
                level = conn.execute("SHOW transaction_isolation").fetchone()[0]
                assert level == "read committed", autocommit
                if not autocommit:
                    conn.rollback()  # the SET was committed: a rollback keeps it
                    level = conn.execute("SHOW transaction_isolation").fetchone()[0]
                    assert level == "read committed"
            finally:
                conn.close()
        units = Units(db)  # the billing engine's sessions (SQLAlchemy), two transactions each
        for _ in range(2):
            with units.unit(datetime.now(UTC)) as session:
                level = session.exec(text("SHOW transaction_isolation")).one()[0]
                assert level == "read committed"
        units.engine.dispose()
    finally:
        db.close()


def test_a_migration_outlasts_a_statement_timeout_set_for_the_database(pg_server_url):
    """Revision 0015 rebuilds an index under a lock on flowjobs_runs; here a reader holds that
    table for longer than the database's statement_timeout. The migration waits for it (it
    was canceled, and start-up would have tried again forever) and completes."""
    url = new_pg_database(pg_server_url, template=None)
    db = Database(url)
    upgrade(db, "0014")
    db.close()
    alter_database(url, "statement_timeout = '250ms'")
    blocker = psycopg.connect(plain(url))
    blocker.execute("LOCK TABLE flowjobs_runs IN ACCESS SHARE MODE")  # in a transaction
    outcome: dict = {}

    def migrate():
        migrating = Database(url)
        try:
            outcome["revisions"] = upgrade(migrating)
        except Exception as exc:  # reported below
            outcome["error"] = exc
        finally:
            migrating.close()

    thread = threading.Thread(target=migrate)
    thread.start()
    waited = None
    deadline = time.monotonic() + 20
    watcher = psycopg.connect(plain(url), autocommit=True)  # activity is read once a transaction
    while waited is None and "error" not in outcome and time.monotonic() < deadline:
        waited = watcher.execute(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'ALTER TABLE flowjobs_runs%' "
            "AND clock_timestamp() - query_start > interval '400 ms'"
        ).fetchone()
        time.sleep(0.02)
    watcher.close()
    blocker.commit()
    blocker.close()
    thread.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert waited is not None  # it did wait past the timeout, and was not canceled
    assert outcome["revisions"] == ("0014", HEAD)
    check = Database(url)
    try:
        assert current_revision(check) == HEAD
    finally:
        check.close()


def test_a_pooled_connection_ended_while_idle_is_not_lent_out(pg_template):
    """A connection waiting in the pool was ended by the server (an administrator here;
    `idle_session_timeout` or a proxy that drops quiet connections in life). A quiet process's
    next statement gets a live connection instead of an error. A connection back in the pool
    for less than `idle_check` is lent without a check (none here: every one is checked)."""
    db = Database(new_pg_database(pg_template))
    try:
        with db.borrow() as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with psycopg.connect(plain(db.conninfo), autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        db.idle_check = 0.0
        with db.borrow() as conn:
            assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
    finally:
        db.close()


def test_a_connection_back_in_the_pool_for_less_than_idle_check_is_lent_unchecked(
    pg_template, monkeypatch
):
    """The check costs a round trip: a connection used moments ago is lent without one (a
    busy process's borrows never pay it); one idle for `idle_check` is checked once."""
    import flowjobs.store.db as db_module

    checked = []
    real = db_module._alive
    monkeypatch.setattr(db_module, "_alive", lambda conn: checked.append(conn) or real(conn))
    db = Database(new_pg_database(pg_template))
    try:
        for _ in range(3):
            with db.borrow() as conn:
                conn.execute("SELECT 1")
        assert checked == [] and db.idle_check == 5.0
        db._idle = [(conn, since - 5.0) for conn, since in db._idle]  # as if 5 s had passed
        with db.borrow() as conn:
            conn.execute("SELECT 1")
        assert len(checked) == 1
    finally:
        db.close()


def test_a_role_without_privileges_gets_one_line_saying_so(pg_template):
    """The usual `createdb` then `createuser`: the new role may not create tables in `public`
    (PostgreSQL 15 and newer) nor read tables another role owns. It was "unexpected
    InsufficientPrivilege … report it" (exit 1), and a multi-line SQL dump from `db upgrade`."""
    import uuid

    from tests.cli_helpers import cli_env, flowjobs, no_crash

    role = f"fj_guest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(plain(pg_template), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        for template, args, denied in (
            (None, ("db", "upgrade"), "permission denied for schema public"),
            ("flowjobs_template", ("runs", "list"), "permission denied for table"),
        ):
            url = new_pg_database(pg_template, template=template)
            server, name = url.rsplit("/", 1)
            host = server.split("@", 1)[1]
            as_guest = f"postgresql+psycopg://{role}@{host}/{name}"
            result = flowjobs(*args, env=cli_env(as_guest))
            assert result.returncode == 4, result.stderr
            [line] = result.stderr.strip().splitlines()
            assert line.startswith(f"error: database {as_guest} refused this role")
            assert denied in line and "GRANT CREATE ON SCHEMA public" in line
            assert no_crash(line), line
    finally:
        with psycopg.connect(plain(pg_template), autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")
