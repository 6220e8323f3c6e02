"""The webhook inbox: one row per received event (or rejected request), raw bytes included."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, Index, LargeBinary, text
from sqlmodel import Field

from flowjobs.store.tables import Base, UTCDateTime

SOURCES = ("stripe", "supabase")
STATUSES = ("received", "routed", "ignored", "rejected")
SIGNATURES = ("verified", "unverified", "invalid", "missing")


class InboxEvent(Base, table=True):
    __tablename__ = "webhook_events"
    __table_args__ = (
        CheckConstraint("source IN ('stripe', 'supabase')", name="ck_source"),
        CheckConstraint(
            "status IN ('received', 'routed', 'ignored', 'rejected')", name="ck_status"
        ),
        # one accepted event per (source, key); rejected requests and forced replays carry no key
        Index(
            "ux_webhook_events_dedup",
            "source",
            "dedup_key",
            unique=True,
            sqlite_where=text("dedup_key IS NOT NULL"),
            postgresql_where=text("dedup_key IS NOT NULL"),
        ),
        Index("ix_webhook_events_received", "received_at"),
    )
    source: str
    event_id: str | None = None  # Stripe's evt_…, or the derived Supabase key
    dedup_key: str | None = None
    type: str | None = None
    livemode: bool | None = None
    account: str | None = None  # Stripe Connect account
    body: bytes = Field(sa_type=LargeBinary)
    headers: dict = Field(default_factory=dict, sa_type=JSON)
    signature: str = "unverified"
    signature_detail: str | None = None
    received_at: datetime = Field(sa_type=UTCDateTime)
    status: str = "received"
    task: str | None = None
    run_id: str | None = None
    replay_of: str | None = None
    via: str = "http"  # http | file | replay
    error: str | None = None
