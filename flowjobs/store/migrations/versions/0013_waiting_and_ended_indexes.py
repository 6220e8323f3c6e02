"""The claim and finished indexes become `flowjobs_runs_waiting` and `flowjobs_runs_ended`; on
SQLite their conditions are spelled as OR chains.

SQLite evaluates an IN list of three or more constants through a temporary B-tree that it
builds anew in every statement (with its own page cache, ~90 KB allocated and freed). The two
partial indexes were conditioned on such lists (`status IN ('queued', 'delayed', 'retrying')`,
and the four finished states), and SQLite evaluates an index's condition for the old and the
new row whenever a statement writes a row: up to 7 temporary B-trees in one claim or finish,
3 in an insert. Spelled as `status = … OR status = …` the same conditions cost no allocation.
A query uses a partial index only when one of its terms is the index's condition as written,
so every statement that must use these indexes spells them the same way on SQLite
(`flowjobs.store.queries.spelled`).

SQLite runs this DDL outside a transaction, so each new index is made under its new name before
the old one goes (both only if not done yet): a migration stopped half-way leaves the table
with one index or both, and runs again. PostgreSQL has no such cost; its indexes are only
renamed, so that both dialects name them alike. Processes of an older flowjobs must be stopped
first: their SQLite claim names the old index (docs/operations.md, "Upgrading").

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

WAITING = ("queued", "delayed", "retrying")
ENDED = ("completed", "failed", "canceled", "expired")
# old name, new name, columns, statuses
INDEXES = [
    ("flowjobs_runs_claim", "flowjobs_runs_waiting", ["priority", "run_at", "id"], WAITING),
    ("flowjobs_runs_finished", "flowjobs_runs_ended", ["finished_at"], ENDED),
]


def _or_chain(statuses) -> str:
    return "(" + " OR ".join(f"status = '{s}'" for s in statuses) + ")"


def _in_list(statuses) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def upgrade() -> None:
    _replace(forward=True)


def downgrade() -> None:
    _replace(forward=False)


def _replace(forward: bool) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for old, new, columns, statuses in INDEXES:
        source, target = (old, new) if forward else (new, old)
        if not sqlite:
            op.execute(f"ALTER INDEX IF EXISTS {source} RENAME TO {target}")
            continue
        where = _or_chain(statuses) if forward else _in_list(statuses)
        op.create_index(
            target, "flowjobs_runs", columns, if_not_exists=True, sqlite_where=sa.text(where)
        )
        op.drop_index(source, "flowjobs_runs", if_exists=True)
