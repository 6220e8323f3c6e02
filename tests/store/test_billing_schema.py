"""The billing tables the migrations create match the SQLModel classes, on both backends,
and a database made before the billing tables existed upgrades with its runs intact."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from flowjobs.outbound import models as _outbound  # noqa: F401  (so do the outbound webhook tables)
from flowjobs.store.db import Database
from flowjobs.store.migrate import HEAD, current_revision, upgrade
from flowjobs.store.tables import metadata
from flowjobs.store.units import make_engine
from flowjobs.webhooks import models as _inbox  # noqa: F401  (the inbox shares the metadata)


def test_migrated_schema_matches_the_models(db_url):
    engine = make_engine(Database(db_url))
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), metadata
            )
    finally:
        engine.dispose()
    ours = [
        d
        for d in diffs
        if not (
            d[0] == "remove_table"
            and (d[1].name.startswith("flowjobs_") or d[1].name == "alembic_version")
        )
    ]
    ours = [
        d
        for d in ours
        if not (
            isinstance(d, tuple)
            and d[0] == "remove_index"
            and d[1].table.name.startswith("flowjobs_")
        )
    ]
    assert ours == []
    assert current_revision(Database(db_url)) == HEAD


def test_upgrade_from_the_job_tables_only_keeps_runs(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(db, "0002")
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO flowjobs_schedules (id, last_slot, enabled, created_at, updated_at) "
            "VALUES ('hourly-cron', 1, NULL, 1, 1)"
        )
    before, after = upgrade(db)
    assert (before, after) == ("0002", HEAD)
    engine = make_engine(db)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert set(metadata.tables) <= tables
    with db.borrow() as conn:
        assert conn.execute("SELECT last_slot FROM flowjobs_schedules").fetchall() == [(1,)]
