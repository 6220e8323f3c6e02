"""Schema migrations on a real SQLite file: a newer schema is refused, an older one upgrades
with its runs intact."""

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
    new = Runtime(Settings.model_validate({"database": {"url": url}}))
    assert new.store.get_run(run.id)["status"] == "queued"
    assert migrate.current_revision(new.db) == migrate.HEAD
    assert new.store.schedule_states() == {}
    new.close()
