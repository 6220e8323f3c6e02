"""The indexes on idempotency keys and parents hold only the runs that have one.

Most runs have no idempotency key and no parent, yet every insert wrote an entry for them into
three indexes (task + dedup key, task + idempotency key, parent). Partial indexes
(`WHERE … IS NOT NULL`) skip those entries: an insert touches three B-trees fewer (on SQLite,
three pages fewer in the WAL per commit). Every query that uses them compares the column with
`=` or a range, which implies `IS NOT NULL`, so both SQLite and PostgreSQL still pick them; the
insert's `ON CONFLICT` names the unique index's predicate (`queries.insert_runs`).

Each partial index is made under a new name before the full one it replaces is dropped (both
only if not done yet): SQLite runs this DDL outside a transaction, and a migration stopped
half-way must neither leave the table without its unique index nor fail when run again.
Processes of an older flowjobs must be stopped first: their insert names the full index in its
`ON CONFLICT`, which no longer matches (docs/operations.md, "Upgrading").

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# full index, partial index, columns, unique, the column that must be set
INDEXES = [
    ("flowjobs_runs_dedup", "flowjobs_runs_live_key", ["task", "dedup_key"], True, "dedup_key"),
    ("flowjobs_runs_idempotency", "flowjobs_runs_key", ["task", "idempotency_key"], False,
     "idempotency_key"),
    ("flowjobs_runs_parent", "flowjobs_runs_child", ["parent_id"], False, "parent_id"),
]


def upgrade() -> None:
    for full, partial, columns, unique, column in INDEXES:
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            partial, "flowjobs_runs", columns, unique=unique, if_not_exists=True,
            sqlite_where=where, postgresql_where=where,
        )
        op.drop_index(full, "flowjobs_runs", if_exists=True)


def downgrade() -> None:
    for full, partial, columns, unique, _ in INDEXES:
        op.create_index(full, "flowjobs_runs", columns, unique=unique, if_not_exists=True)
        op.drop_index(partial, "flowjobs_runs", if_exists=True)
