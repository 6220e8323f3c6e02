"""Cancelling subscriptions (spec §7.8): at once, or at the end of the current period.

Decisions (docs/billing.md): cancelling never re-creates the customer's free default plan
(flowjobs has no pricing-model catalogue to pick it from); the `subscription.canceled` event
row is inserted once per subscription (its hash is sha256 of `{type, id}`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import update
from sqlmodel import select

from flowjobs import ids
from flowjobs.billing import enums as E
from flowjobs.billing import repo
from flowjobs.billing.models import (BillingPeriod, BillingRun, Customer, Event, Subscription,
                                     SubscriptionItem)
from flowjobs.billing.repo import BillingError
from flowjobs.billing.types import ms_from_utc


def cancel_immediately(b, s, sub: Subscription, reason: str = E.CancellationReason.CUSTOMER_REQUEST) -> bool:
    """Cancel now; returns False when it had already ended (then only the event is ensured)."""
    now = s.info["now"]
    if sub.status in E.SUBSCRIPTION_TERMINAL:
        _emit_canceled(s, sub, now)
        return False
    if sub.scheduled_adjustment_at is not None:
        raise BillingError(f"subscription {sub.id} has a scheduled adjustment; cancel that first")
    sub.canceled_at = sub.canceled_at or now
    sub.cancel_scheduled_at = sub.cancel_scheduled_at or now
    sub.cancellation_reason = sub.cancellation_reason or reason
    repo.set_subscription_status(sub, E.SubscriptionStatus.CANCELED)
    _close_periods(s, sub, now)
    abort_scheduled_runs(s, sub.id)
    s.execute(update(SubscriptionItem)
              .where(SubscriptionItem.subscription_id == sub.id,
                     (SubscriptionItem.expired_at == None) | (SubscriptionItem.expired_at > now))  # noqa: E711
              .values(expired_at=now, updated_at=now))
    b.trigger(s, "send-customer-subscription-canceled-notification", {"subscriptionId": sub.id},
              key=f"send-customer-subscription-canceled-notification-{sub.id}")
    b.trigger(s, "send-organization-subscription-canceled-notification", {"subscription": {"id": sub.id}},
              key=f"send-organization-subscription-canceled-notification-{sub.id}")
    _emit_canceled(s, sub, now)
    return True


def _close_periods(s, sub: Subscription, now: datetime) -> None:
    for period in s.exec(select(BillingPeriod).where(BillingPeriod.subscription_id == sub.id)):
        if period.start_date > now or period.status == E.BillingPeriodStatus.PAST_DUE:
            repo.set_period_status(period, E.BillingPeriodStatus.CANCELED)
        elif period.end_date > now and period.status not in E.PERIOD_TERMINAL:
            period.end_date = now
            repo.set_period_status(period, E.BillingPeriodStatus.COMPLETED)


def abort_scheduled_runs(s, subscription_id: str) -> int:
    return s.execute(update(BillingRun)
                     .where(BillingRun.subscription_id == subscription_id,
                            BillingRun.status == E.BillingRunStatus.SCHEDULED)
                     .values(status=E.BillingRunStatus.ABORTED, updated_at=s.info["now"])).rowcount


def schedule_cancellation(b, s, sub: Subscription, at: datetime | None = None) -> datetime:
    """Cancel at `at` (default: the end of the current period); returns the cancel date."""
    now = s.info["now"]
    if sub.is_free_plan:
        raise BillingError(f"subscription {sub.id} is a free plan; free plans cannot be canceled")
    if sub.status in E.SUBSCRIPTION_TERMINAL:
        raise BillingError(f"subscription {sub.id} is already {sub.status}")
    end = at or sub.current_billing_period_end or now
    sub.cancel_scheduled_at = end
    repo.set_subscription_status(sub, E.SubscriptionStatus.CANCELLATION_SCHEDULED)
    for period in s.exec(select(BillingPeriod).where(BillingPeriod.subscription_id == sub.id,
                                                     BillingPeriod.start_date >= end)):
        repo.set_period_status(period, E.BillingPeriodStatus.SCHEDULED_TO_CANCEL)
    abort_scheduled_runs(s, sub.id)
    date_ms = ms_from_utc(end)
    b.trigger(s, "send-customer-subscription-cancellation-scheduled-notification",
              {"subscriptionId": sub.id, "scheduledCancellationDate": date_ms},
              key=f"send-customer-subscription-cancellation-scheduled-notification-{sub.id}-{date_ms}")
    b.trigger(s, "send-organization-subscription-cancellation-scheduled-notification",
              {"subscription": {"id": sub.id}, "scheduledCancellationDate": date_ms},
              key=f"send-organization-subscription-cancellation-scheduled-notification-{sub.id}-{date_ms}")
    return end


def event_hash(event_type: str, object_id: str) -> str:
    return hashlib.sha256(json.dumps({"type": event_type, "id": object_id}, separators=(",", ":")).encode()).hexdigest()


def _emit_canceled(s, sub: Subscription, now: datetime) -> None:
    digest = event_hash(E.FlowgladEventType.SUBSCRIPTION_CANCELED, sub.id)
    if s.exec(select(Event.id).where(Event.hash == digest)).first() is not None:
        return
    customer = s.get(Customer, sub.customer_id)
    s.add(Event(id=ids.new_id("event"), livemode=sub.livemode, type=E.FlowgladEventType.SUBSCRIPTION_CANCELED,
                payload={"object": E.EventNoun.SUBSCRIPTION, "id": sub.id,
                         "customer": {"id": customer.id, "externalId": customer.external_id}},
                occurred_at=now, submitted_at=now, object_entity=E.EventNoun.SUBSCRIPTION,
                object_id=sub.id, hash=digest, organization_id=sub.organization_id))
