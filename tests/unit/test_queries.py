"""The SQL catalogue: every named statement is SQL in its dialect's parameter style; the
statements only PostgreSQL needs are apart, so none is ever None."""

from flowjobs.store.queries import catalogue, dialect_only


def test_every_statement_is_sql_and_only_postgresql_has_the_queue_lock_notify_and_plan():
    sqlite, postgresql = catalogue("sqlite"), catalogue("postgresql")
    assert set(sqlite) == set(postgresql)
    for statements in (sqlite, postgresql):
        assert all(isinstance(sql, str) and sql.strip() for sql in statements.values())
    assert dialect_only("sqlite") == {}
    only = dialect_only("postgresql")
    assert set(only) == {"lock_queue", "notify", "claim_plan"}
    assert not set(only) & set(postgresql)
    assert only["notify"] == "SELECT pg_notify('flowjobs_runs', %(queue)s)"
    assert ":lock_key" not in only["lock_queue"] and "%(lock_key)s" in only["lock_queue"]
