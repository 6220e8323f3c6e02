"""`flowjobs db copy --to URL`: move everything (jobs, schedules, inbox, billing data) from
one database into another — typically a SQLite file into PostgreSQL when one machine is no
longer enough.

The target is migrated to the current schema and must be empty. Every table is copied in one
transaction on the target (all or nothing), in batches, and the row counts of source and
target are compared before it commits. Times keep their meaning across dialects (the billing
tables' timezone-aware columns, the job tables' epoch milliseconds). Runs still executing in
the source are refused, and so is a source a worker is alive on: stop the workers first, so no
run is copied mid-flight and nothing is written to the source after the copy.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from sqlalchemy import MetaData, Table, func, insert, select, text

from flowjobs.errors import BadInput, FlowjobsError
from flowjobs.store.db import Database, redact
from flowjobs.store.queries import RESET_LOG_SEQUENCE
from flowjobs.store.states import RunStatus
from flowjobs.store.text import storable

JOB_TABLES = ["flowjobs_runs", "flowjobs_attempts", "flowjobs_logs", "flowjobs_schedules"]


def _model_tables():
    from flowjobs.billing import models as _billing  # noqa: F401  (each module adds its tables)
    from flowjobs.outbound import models as _outbound  # noqa: F401
    from flowjobs.store.tables import metadata
    from flowjobs.webhooks import models as _inbox  # noqa: F401

    return list(metadata.sorted_tables)


def copy_database(
    source_url: str, target_url: str, batch: int = 1000, progress=None, now_ms: int | None = None
) -> dict[str, int]:
    """Copy everything from `source_url` into `target_url` (see the module's docstring);
    `now_ms`: the time workers' heartbeats are judged by (default: the system clock)."""
    from flowjobs.store.migrate import ensure_schema, upgrade
    from flowjobs.store.units import make_engine

    if source_url == target_url:
        raise BadInput("--to names the source database itself")
    source, target = Database(source_url), Database(target_url)
    ensure_schema(source)
    _refuse_live_workers(source, int(time.time() * 1000) if now_ms is None else now_ms)
    with named(target):
        upgrade(target)
    src, dst = make_engine(source), make_engine(target)
    try:
        job_src = _reflect(src)
        with named(target):
            job_dst = _reflect(dst)
        pairs = [(job_src[name], job_dst[name]) for name in JOB_TABLES]
        pairs += [(table, table) for table in _model_tables()]
        with src.connect() as inp:
            _refuse_executing(inp, job_src["flowjobs_runs"])
            # a failure of the target (too large a value, no space, gone away) names the
            # target, not the source the command's --database points at
            with named(target), dst.begin() as out:
                _refuse_non_empty(out, [d for _, d in pairs], target_url)
                counts = {d.name: _copy(inp, out, s, d, batch, progress, source) for s, d in pairs}
                _verify(inp, out, pairs, source)
                if dst.dialect.name == "postgresql":
                    out.execute(text(RESET_LOG_SEQUENCE))
        return counts
    finally:
        src.dispose()
        dst.dispose()


@contextmanager
def named(db: Database):
    """A driver's failure inside, as flowjobs' error naming `db` (else it would be named after
    the command's own database). A flowjobs error from a block nested inside passes as it is."""
    try:
        yield
    except FlowjobsError:
        raise
    except Exception as exc:
        known = db.translate(exc)
        if known is None:
            raise
        raise known from exc


def others_tables(url: str) -> list[str]:
    """Tables of the database at `url` that are not flowjobs' (an application's own tables in
    the same file): `db copy` leaves them where they are, and says so."""
    from sqlalchemy import inspect as sa_inspect

    from flowjobs.store.migrate import OWN_TABLES
    from flowjobs.store.units import make_engine

    engine = make_engine(Database(url))
    try:
        names = set(sa_inspect(engine).get_table_names())
    finally:
        engine.dispose()
    return sorted(names - OWN_TABLES - {"alembic_version"})


def _reflect(engine) -> dict[str, Table]:
    meta = MetaData()
    meta.reflect(bind=engine, only=JOB_TABLES)
    return meta.tables


def _refuse_live_workers(source: Database, now_ms: int) -> None:
    """A worker alive on the source would go on writing there (schedule slots, new runs) after
    the copy: stop them first, as for runs still executing."""
    from flowjobs.ops.workers import LIVE_WITHIN_MS, alive
    from flowjobs.store.jobs import JobStore

    live = alive(JobStore(source), now_ms)
    if live:
        names = ", ".join(w["id"] for w in live[:3]) + (" …" if len(live) > 3 else "")
        one = len(live) == 1
        raise BadInput(
            f"{len(live)} worker{' was' if one else 's were'} seen alive on the source in the "
            f"last {LIVE_WITHIN_MS // 1000} s ({names}): stop {'it' if one else 'them'} first "
            "(SIGTERM; `flowjobs workers` lists them; one killed outright counts as alive "
            "until then), then copy"
        )


def _refuse_executing(conn, runs: Table) -> None:
    ids = [
        row[0]
        for row in conn.execute(
            select(runs.c.id).where(runs.c.status == RunStatus.EXECUTING).order_by(runs.c.id)
        )
    ]
    if ids:
        one = len(ids) == 1
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise BadInput(
            f"{len(ids)} run{' is' if one else 's are'} executing in the source ({shown}): "
            "stop the workers first (`run-worker` drains on SIGTERM), then copy; a run whose "
            "worker is gone (killed, or stopped past its shutdown timeout) is ended by "
            f"`flowjobs runs cancel RUN`, or run again by a worker started on the source"
        )


def _refuse_non_empty(conn, tables: list[Table], url: str) -> None:
    for table in tables:
        if conn.execute(select(func.count()).select_from(table)).scalar():
            raise BadInput(
                f"the target {redact(url)} already has rows in {table.name}; copy into an empty database"
            )


def _copy(inp, out, source: Table, target: Table, batch: int, progress, source_db) -> int:
    """Copy every row. Into PostgreSQL, a NUL character in text (SQLite holds one, and earlier
    flowjobs stored a task's error or log line as it came) is written as `\\x00`, as flowjobs
    writes it now (`store/text.py`): PostgreSQL's text cannot hold one."""
    copied = 0
    row_of = _nul_safe if out.dialect.name == "postgresql" else dict
    with named(source_db):
        result = inp.execution_options(stream_results=True, yield_per=batch).execute(select(source))
        batches = result.mappings().partitions(batch)
    while True:
        with named(source_db):
            rows = next(batches, None)
        if rows is None:
            break
        out.execute(insert(target), [row_of(row) for row in rows])
        copied += len(rows)
        if progress:
            progress(target.name, len(rows))
    return copied


def _nul_safe(row) -> dict:
    return {k: storable(v) if isinstance(v, str) else v for k, v in row.items()}


def _verify(inp, out, pairs, source_db) -> None:
    for source, target in pairs:
        with named(source_db):
            have = inp.execute(select(func.count()).select_from(source)).scalar()
        got = out.execute(select(func.count()).select_from(target)).scalar()
        if have != got:
            raise RuntimeError(
                f"{target.name}: {have} rows in the source but {got} copied; nothing was committed"
            )
