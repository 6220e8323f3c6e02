"""On PostgreSQL, flowjobs_runs is vacuumed as a queue: after 1 % of its rows (plus 1,000) have
changed, not 20 %, and with its indexes cleaned every time.

Every claim and every finish writes a new version of a run's row and leaves the old one dead.
The claim walks `flowjobs_runs_waiting` from its head, where the entries of the runs claimed
since the last vacuum lie: each one it steps over is a read (measured, a table of 1,000,000
finished runs: 24 pages a claim after a vacuum, 77 with 5,000 runs claimed since, 293 with
20,000, 879 with 80,000; docs/benchmarks.md, session 15). PostgreSQL's defaults wait until 20 %
of a table has changed: 200,000 runs on such a table, so the claim slowed as the table grew.
And from PostgreSQL 14 on, a vacuum that finds dead rows on fewer than 2 % of the table's pages
skips the indexes altogether, so on a big table the waiting index kept its dead entries even
after a vacuum; `vacuum_index_cleanup = on` makes it clean them.

Storage parameters of the table only: nothing is rewritten, no lock is held beyond a moment. An
operator may tune them further (`ALTER TABLE flowjobs_runs SET (…)`; docs/operations.md).
SQLite keeps no dead rows: nothing changes there.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

QUEUE_VACUUM = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "1000",
    "vacuum_index_cleanup": "on",
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        settings = ", ".join(f"{name} = {value}" for name, value in QUEUE_VACUUM.items())
        op.execute(f"ALTER TABLE flowjobs_runs SET ({settings})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE flowjobs_runs RESET ({', '.join(QUEUE_VACUUM)})")
