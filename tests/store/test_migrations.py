"""Schema migrations on a real SQLite file (and, where a revision differs there, PostgreSQL): a
newer schema is refused, an older one upgrades with its runs intact."""

import pytest

from flowjobs.store import migrate


def test_newer_schema_is_refused(tmp_path):
    from flowjobs.errors import DatabaseError
    from flowjobs.store.db import Database

    db = Database(f"sqlite:///{tmp_path}/x.db")
    migrate.upgrade(db)
    conn = db.connect()
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    with pytest.raises(DatabaseError, match="newer than this flowjobs"):
        migrate.ensure_schema(db)


def test_upgrade_from_an_older_schema_keeps_its_runs(tmp_path):
    from flowjobs.config import Settings
    from flowjobs.runtime import Runtime
    from flowjobs.store.db import Database

    url = f"sqlite:///{tmp_path}/old.db"
    migrate.upgrade(Database(url), target="0001")  # a database made by the first release
    old = Runtime(Settings.model_validate({"database": {"url": url}}), migrate=False)
    run = old.trigger("noop")
    old.close()
    assert migrate.upgrade(Database(url)) == ("0001", migrate.HEAD)  # `flowjobs db upgrade`
    new = Runtime(Settings.model_validate({"database": {"url": url}}))
    assert new.store.get_run(run.id)["status"] == "queued"
    assert migrate.current_revision(new.db) == migrate.HEAD
    assert new.store.schedule_states() == {}
    new.close()


def test_only_db_upgrade_upgrades_an_older_schema(tmp_path):
    """A newer flowjobs's `runs list`, `doctor` or worker upgraded it as a side effect, and the
    older version's workers still running could no longer insert runs."""
    from flowjobs.store.db import Database
    from tests.cli_helpers import cli_env, flowjobs

    url = f"sqlite:///{tmp_path}/old.db"
    migrate.upgrade(Database(url), target="0010")
    env = cli_env(url)
    for args in (("runs", "list"), ("trigger", "noop"), ("run-worker", "--burst")):
        refused = flowjobs(*args, env=env)
        assert refused.returncode == 4, (args, refused.stderr)
        assert refused.stderr.strip().splitlines() == [
            f"error: database {url} is at schema revision 0010, older than this flowjobs "
            f"({migrate.HEAD}): stop the flowjobs processes of the older version, then run "
            '`flowjobs db upgrade` once (docs/operations.md, "Upgrading"); nothing was changed'
        ]
    doctor = flowjobs("doctor", env=env)
    assert doctor.returncode == 1
    assert f"revision 0010, older than this flowjobs ({migrate.HEAD})" in doctor.stdout
    assert migrate.current_revision(Database(url)) == "0010"
    upgraded = flowjobs("db", "upgrade", env=env)
    assert upgraded.returncode == 0 and f"upgraded from 0010 to {migrate.HEAD}" in upgraded.stdout
    assert flowjobs("runs", "list", env=env).returncode == 0


def _empty_database(dialect: str, tmp_path, request) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path}/x.db"
    from tests.conftest import new_pg_database

    return new_pg_database(request.getfixturevalue("pg_server_url"), template=None)


def _run_indexes(db) -> dict[str, str]:
    """Index name -> its definition, for flowjobs_runs."""
    with db.borrow() as conn:
        if db.dialect == "sqlite":
            rows = conn.execute(
                "SELECT name, sql FROM sqlite_master "
                "WHERE type = 'index' AND tbl_name = 'flowjobs_runs'"
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'flowjobs_runs'"
            ).fetchall()
    return {name: sql or "" for name, sql in rows}


# SQLite, a run of 0013 stopped half-way (its DDL commits statement by statement): nothing
# done, the waiting index made, the claim index dropped too (the ended index not made yet).
HALF_DONE = {
    "": [],
    "waiting made": [
        "CREATE INDEX flowjobs_runs_waiting ON flowjobs_runs (priority, run_at, id) "
        "WHERE (status = 'queued' OR status = 'delayed' OR status = 'retrying')"
    ],
}
HALF_DONE["claim dropped"] = HALF_DONE["waiting made"] + ["DROP INDEX flowjobs_runs_claim"]


@pytest.mark.parametrize(
    "dialect, half_done",
    [("sqlite", ""), ("sqlite", "waiting made"), ("sqlite", "claim dropped"), ("postgresql", "")],
)
def test_revision_0013_renames_the_claim_and_finished_indexes(
    dialect, half_done, tmp_path, request
):
    """0012 -> 0013: the claim and finished indexes become flowjobs_runs_waiting and
    flowjobs_runs_ended, conditioned by OR chains on SQLite (renamed only on PostgreSQL); runs
    waiting and finished before are claimed and found by the new indexes. On SQLite a migration
    stopped half-way runs again."""
    from flowjobs.store.db import Database
    from flowjobs.store.jobs import JobStore, NewRun

    db = Database(_empty_database(dialect, tmp_path, request))
    migrate.upgrade(db, target="0012")
    old = JobStore(db)
    old.enqueue_alone([NewRun("run_a", "noop", "default", "{}", "h", 0, 3, 1_000)], 1_000)
    with db.borrow() as conn:
        for statement in HALF_DONE[half_done]:
            conn.execute(statement)
    assert migrate.upgrade(db) == ("0012", migrate.HEAD)

    indexes = _run_indexes(db)
    assert "flowjobs_runs_claim" not in indexes and "flowjobs_runs_finished" not in indexes
    if dialect == "sqlite":
        assert (
            "(status = 'queued' OR status = 'delayed' OR status = 'retrying')"
            in (indexes["flowjobs_runs_waiting"])
        )
        assert (
            "(status = 'completed' OR status = 'failed' OR status = 'canceled' "
            in (indexes["flowjobs_runs_ended"])
        )
    else:
        assert "(priority, run_at, id)" in indexes["flowjobs_runs_waiting"]
        assert "(finished_at)" in indexes["flowjobs_runs_ended"]
    store = JobStore(db)
    [run] = store.claim("w", 5, ["*"], {}, 2_000, 30_000)
    assert run.id == "run_a"
    assert store.finish(
        run, status="completed", outcome="succeeded", worker="w", now=3_000, started_at=2_000
    )
    if dialect == "sqlite":  # the pruner finds finished runs through the ended index
        with db.borrow() as conn:
            plan = conn.execute(
                "EXPLAIN QUERY PLAN " + store.sql["prunable"],
                {
                    "cutoff": 4_000,
                    "completed_before": 4_000,
                    "failed_before": 4_000,
                    "now": 4_000,
                    "limit": 10,
                },
            ).fetchall()
        assert "flowjobs_runs_ended" in " ".join(str(row) for row in plan)
    store.close()
    db.close()


def _reloptions(db) -> dict[str, str]:
    with db.borrow() as conn:
        (options,) = conn.execute(
            "SELECT reloptions FROM pg_class WHERE oid = 'flowjobs_runs'::regclass"
        ).fetchone()
    return dict(option.split("=", 1) for option in options or [])


def _downgrade(db, target: str) -> None:
    """alembic's downgrade, on the connection shape `migrate` upgrades with (flowjobs itself
    never downgrades: an operator runs alembic)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    engine = create_engine(db.url)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(migrate.MIGRATIONS))
            config.attributes["connection"] = connection
            command.downgrade(config, target)
    finally:
        engine.dispose()


QUEUE_VACUUM = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "1000",
    "vacuum_index_cleanup": "on",
}


def test_revision_0016_vacuums_the_run_table_as_a_queue(tmp_path, request):
    """PostgreSQL: flowjobs_runs is vacuumed once its dead rows pass 1,000 plus 1 % of its rows,
    not 50 plus 20 %, and every vacuum cleans its indexes (PostgreSQL 14+ skips them when dead
    rows sit on under 2 % of the table's pages, which on a big table left the waiting index's
    dead entries for every claim to step over: docs/benchmarks.md, session 15). A parameter the
    operator set before is kept, and a downgrade resets only what 0016 set."""
    from flowjobs.store.db import Database

    db = Database(_empty_database("postgresql", tmp_path, request))
    migrate.upgrade(db, target="0015")
    assert _reloptions(db) == {}
    assert migrate.upgrade(db) == ("0015", migrate.HEAD)
    assert _reloptions(db) == QUEUE_VACUUM
    _downgrade(db, "0015")
    assert _reloptions(db) == {}

    with db.borrow() as conn:  # an operator's own tuning, made before the upgrade
        conn.execute("ALTER TABLE flowjobs_runs SET (autovacuum_vacuum_scale_factor = 0.002)")
    migrate.upgrade(db)
    assert _reloptions(db) == {**QUEUE_VACUUM, "autovacuum_vacuum_scale_factor": "0.002"}
    _downgrade(db, "0015")
    assert _reloptions(db) == {"autovacuum_vacuum_scale_factor": "0.002"}
    db.close()


def _tables(db) -> set[str]:
    with db.borrow() as conn:
        if db.dialect == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        else:
            sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        return {row[0] for row in conn.execute(sql).fetchall()}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_another_applications_database_is_refused_before_anything_is_written(
    dialect, tmp_path, request
):
    """Pointed at an application's own database (it has `users` and `invoices`), the first
    migration refuses in one line, exit 2, and changes nothing. It used to fail half-way with
    the clashing table's DDL as its message (exit 4, "try again"), and leave SQLite's file with
    flowjobs' first tables and an empty alembic_version, refused by every command after."""
    from flowjobs.errors import BadInput, ExitStatus
    from flowjobs.store.db import Database

    db = Database(_empty_database(dialect, tmp_path, request))
    with db.borrow() as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)")
        conn.execute("CREATE TABLE app_settings (k TEXT)")
    before = _tables(db)
    with pytest.raises(BadInput) as refused:
        migrate.ensure_schema(db)
    assert refused.value.exit_status == ExitStatus.BAD_INPUT
    message = str(refused.value)
    assert "already has tables of the names flowjobs would create (invoices, users)" in message
    assert "give flowjobs a database of its own" in message and "\n" not in message
    assert _tables(db) == before
    assert migrate.current_revision(db) is None
    db.close()


def test_own_tables_are_the_tables_the_migrations_make(tmp_path):
    from flowjobs.store.db import Database

    db = Database(f"sqlite:///{tmp_path}/x.db")
    migrate.upgrade(db)
    assert _tables(db) - {"alembic_version"} == migrate.OWN_TABLES
    db.close()


def test_a_flowjobs_schema_left_half_made_is_named_as_such(tmp_path):
    from flowjobs.errors import BadInput
    from flowjobs.store.db import Database

    db = Database(f"sqlite:///{tmp_path}/x.db")
    with db.borrow() as conn:  # what an interrupted first migration leaves
        conn.execute("CREATE TABLE flowjobs_runs (id TEXT PRIMARY KEY)")
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    with pytest.raises(BadInput, match="its first migration was interrupted half-way"):
        migrate.ensure_schema(db)
    db.close()


def test_the_migration_lock_file_is_removed_after_use(tmp_path):
    """`flowjobs.db.migrate-lock` stayed beside the database after its first command and
    after every `db upgrade`, for users to wonder about (and, made by root, to be refused by
    the service's user later)."""
    from tests.cli_helpers import cli_env, flowjobs

    env = cli_env(f"sqlite:///{tmp_path}/flowjobs.db")
    for args in (("trigger", "noop"), ("db", "upgrade")):
        result = flowjobs(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert not (tmp_path / "flowjobs.db.migrate-lock").exists(), args
    assert (tmp_path / "flowjobs.db").exists()


_LOCKER = """
import os, sys, time
from flowjobs.store.db import Database
from flowjobs.store.migrate import _migration_lock

db, log, rounds = Database(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for _ in range(rounds):
    with _migration_lock(db):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} in\\n")
        time.sleep(0.002)
        with open(log, "a") as f:
            f.write(f"{os.getpid()} out\\n")
"""


def test_the_migration_lock_admits_one_process_at_a_time_though_its_file_goes(tmp_path):
    """The holder removes the lock file before it lets go. A process that waited on that file
    then holds a lock no newcomer sees (the newcomer makes and locks a new file): it must see
    its file gone and start over, or two processes would migrate at once."""
    import subprocess
    import sys

    from tests.cli_helpers import ROOT

    log = tmp_path / "log"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LOCKER, f"sqlite:///{tmp_path}/x.db", str(log), "40"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    lines = log.read_text().splitlines()
    assert len(lines) == 6 * 40 * 2
    for entered, left in zip(lines[::2], lines[1::2], strict=True):
        pid = entered.split()[0]
        assert (entered, left) == (f"{pid} in", f"{pid} out"), "two processes held the lock"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]
