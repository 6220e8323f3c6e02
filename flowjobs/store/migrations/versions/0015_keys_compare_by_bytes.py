"""On PostgreSQL, idempotency keys compare byte by byte (`COLLATE "C"`), as on SQLite.

A schedule finds its runs by key range: `hourly:` up to `hourly;` for all of them, and
`hourly:<time>` … `hourly:<time>` for a window (`store.queries`: schedule_runs, window_runs).
Those ranges assume that text sorts by its bytes. A database made with a language's collation
(`en_US.UTF-8`, ICU's `en-US`: what managed PostgreSQL services create by default) sorts `;`
before `:`, so the first range held nothing there: `schedules backfill` saw no run of any slot
and enqueued them all again (a slot whose key had expired ran twice). The column's collation is
now "C" whatever the database's; equality (the keys' deduplication) is the same under both.

The index on (task, idempotency_key) is rebuilt under the new collation: on a big table this
holds a lock on flowjobs_runs while it is built (docs/operations.md, "Upgrading"). SQLite
compares text by bytes already: nothing changes there.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute('ALTER TABLE flowjobs_runs ALTER COLUMN idempotency_key TYPE text COLLATE "C"')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            'ALTER TABLE flowjobs_runs ALTER COLUMN idempotency_key TYPE text COLLATE pg_catalog."default"'
        )
