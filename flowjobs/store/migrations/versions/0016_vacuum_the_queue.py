"""On PostgreSQL, flowjobs_runs is vacuumed as a queue: once its dead rows pass 1,000 plus 1 % of
its rows, not 50 plus 20 %, and with its indexes cleaned every time.

Every claim and every finish writes a new version of a run's row and leaves the old one dead.
The claim walks `flowjobs_runs_waiting` from its head, where the entries of the runs claimed
since the last vacuum lie: each one it steps over is a read (measured: one claim read 5–6 pages
of a queue of 100,000 runs after a vacuum, 879 with 80,000 runs claimed since; on a table of
1,000,000 finished runs, 24 after a vacuum and 293 with 25,000 claimed since; docs/benchmarks.md,
session 15). PostgreSQL's defaults wait for 20 % of a table: 200,000 dead rows on such a table,
so the claim slowed as the table grew. And from PostgreSQL 14 on, a vacuum that finds dead rows
on fewer than 2 % of the table's pages skips the indexes altogether (on that table, after 5,000
runs: "index scans: 0", the claim still reading 77 pages); `vacuum_index_cleanup = on` makes
every vacuum clean them, as PostgreSQL 12 and 13 always did.

Storage parameters of the table only: nothing is rewritten, and reads and writes go on (the
lock it takes, SHARE UPDATE EXCLUSIVE, waits only for a VACUUM, ANALYZE or index build of
flowjobs_runs already running). A parameter an operator has set already is left as it is, and
the downgrade resets only those that still hold this revision's values (docs/operations.md,
"Vacuum"). SQLite keeps no dead rows: nothing changes there.

Revision ID: 0016
Revises: 0015
"""

from alembic import op
from sqlalchemy import text

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

QUEUE_VACUUM = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "1000",
    "vacuum_index_cleanup": "on",
}


def _current() -> dict[str, str]:
    """flowjobs_runs' storage parameters as they are set now."""
    options = (
        op.get_bind()
        .execute(text("SELECT reloptions FROM pg_class WHERE oid = 'flowjobs_runs'::regclass"))
        .scalar()
    )
    return dict(option.split("=", 1) for option in options or [])


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    current = _current()
    missing = {name: value for name, value in QUEUE_VACUUM.items() if name not in current}
    if missing:
        settings = ", ".join(f"{name} = {value}" for name, value in missing.items())
        op.execute(f"ALTER TABLE flowjobs_runs SET ({settings})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    current = _current()
    ours = [name for name, value in QUEUE_VACUUM.items() if current.get(name) == value]
    if ours:
        op.execute(f"ALTER TABLE flowjobs_runs RESET ({', '.join(ours)})")
