"""The outbound webhook tables (migration 0007).

- `webhook_endpoints`: where an organisation receives its events, per livemode: URL, signing
  secret (`whsec_<base64>`), event-type filter (a JSON list; NULL or empty = every type),
  enabled.
- `webhook_deliveries`: the durable record of one event delivered to one endpoint (unique on
  the pair): status, attempts, the last status code, latency, response excerpt or error, and
  the run that delivers it. `message_id` is the `webhook-id` header, the same on every attempt
  and every redelivery, so a receiver can deduplicate.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, Index
from sqlmodel import Field

from flowjobs.store.tables import Base, UTCDateTime

DELIVERY_STATUSES = ("pending", "retrying", "succeeded", "failed", "skipped")
FINAL = ("succeeded", "failed", "skipped")


class WebhookEndpoint(Base, table=True):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_org", "organization_id", "livemode"),)
    organization_id: str
    livemode: bool
    url: str
    secret: str
    event_types: list | None = Field(default=None, sa_type=JSON)
    enabled: bool = True
    description: str | None = None
    secret_rotated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookDelivery(Base, table=True):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'retrying', 'succeeded', 'failed', 'skipped')",
            name="ck_webhook_deliveries_status",
        ),
        Index("ux_webhook_deliveries_event_endpoint", "event_id", "endpoint_id", unique=True),
        Index("ix_webhook_deliveries_status", "status"),
    )
    event_id: str
    event_hash: str
    event_type: str
    endpoint_id: str
    organization_id: str
    livemode: bool
    message_id: str
    run_id: str | None = None
    status: str = "pending"
    attempts: int = 0
    last_status_code: int | None = None
    last_latency_ms: int | None = None
    last_error: str | None = None
    response_excerpt: str | None = None
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
