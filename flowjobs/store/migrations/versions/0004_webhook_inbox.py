"""The webhook inbox (DESIGN.md §7): raw events stored before anything else.

Revision ID: 0004
Revises: 0003

Generated once from flowjobs.webhooks.models with Alembic's autogenerate, then frozen.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('webhook_events',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('event_id', sa.String(), nullable=True),
    sa.Column('dedup_key', sa.String(), nullable=True),
    sa.Column('type', sa.String(), nullable=True),
    sa.Column('livemode', sa.Boolean(), nullable=True),
    sa.Column('account', sa.String(), nullable=True),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('signature', sa.String(), nullable=False),
    sa.Column('signature_detail', sa.String(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('task', sa.String(), nullable=True),
    sa.Column('run_id', sa.String(), nullable=True),
    sa.Column('replay_of', sa.String(), nullable=True),
    sa.Column('via', sa.String(), nullable=False),
    sa.Column('error', sa.String(), nullable=True),
    sa.CheckConstraint("source IN ('stripe', 'supabase')", name='ck_source'),
    sa.CheckConstraint("status IN ('received', 'routed', 'ignored', 'rejected')", name='ck_status'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_webhook_events_received', 'webhook_events', ['received_at'], unique=False)
    op.create_index('ux_webhook_events_dedup', 'webhook_events', ['source', 'dedup_key'], unique=True, sqlite_where=sa.text('dedup_key IS NOT NULL'), postgresql_where=sa.text('dedup_key IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ux_webhook_events_dedup', table_name='webhook_events', sqlite_where=sa.text('dedup_key IS NOT NULL'), postgresql_where=sa.text('dedup_key IS NOT NULL'))
    op.drop_index('ix_webhook_events_received', table_name='webhook_events')
    op.drop_table('webhook_events')
