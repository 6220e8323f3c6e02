"""The indexes on idempotency keys and parents hold only the runs that have one.

Most runs have no idempotency key and no parent, yet every insert wrote an entry for them into
three indexes (task + dedup key, task + idempotency key, parent). Partial indexes
(`WHERE … IS NOT NULL`) skip those entries: an insert touches three B-trees fewer (on SQLite,
three pages fewer in the WAL per commit). Every query that uses them compares the column with
`=` or a range, which implies `IS NOT NULL`, so both SQLite and PostgreSQL still pick them; the
insert's `ON CONFLICT` names the index's predicate (`queries.insert_runs`).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# name, columns, unique, the column that must be set
INDEXES = [
    ("flowjobs_runs_dedup", ["task", "dedup_key"], True, "dedup_key"),
    ("flowjobs_runs_idempotency", ["task", "idempotency_key"], False, "idempotency_key"),
    ("flowjobs_runs_parent", ["parent_id"], False, "parent_id"),
]


def upgrade() -> None:
    for name, columns, unique, column in INDEXES:
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(name, "flowjobs_runs")
        op.create_index(
            name, "flowjobs_runs", columns, unique=unique,
            sqlite_where=where, postgresql_where=where,
        )


def downgrade() -> None:
    for name, columns, unique, _ in INDEXES:
        op.drop_index(name, "flowjobs_runs")
        op.create_index(name, "flowjobs_runs", columns, unique=unique)
