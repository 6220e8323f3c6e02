"""Plan changes with proration (spec §7.7; docs/billing.md "Plan changes").

`adjust_subscription(b, subscription_id, price_id=…, quantity=…, timing=…, prorate=…,
dry_run=…)` moves a subscription to another price, given the billing engine `b` (database,
clock, triggers — flowjobs.billing.service.Billing). `flowjobs billing adjust` calls it.

- The proration is flowjobs.billing.proration.prorate: fraction-through by milliseconds,
  net = round(old × fraction) + round(new × (1 − fraction)) − what was paid in the period
  (processing and succeeded payments), never below zero.
- Timing: `immediately`, `at-period-end`, or `auto` (the plan's total goes up → now; down →
  at period end; equal → now). At period end only when the net charge is zero: the new items
  are added from the period's end and the old ones expire then (`scheduled_adjustment_at`);
  the rollover opens the next period with them and syncs the subscription (`apply_scheduled`).
- A positive net charge (and prorating): a `Proration: Net charge adjustment` billing period
  item, an adjustment billing run (`is_adjustment`, due now, `adjustment_params` stored on the
  run) and `attempt-billing-run` triggered for it under the usual key — the same claim, the
  same Stripe keys, the same outcome path as any billing run (flowjobs.billing.runs). The items
  are swapped in the outcome's transaction, only when the payment succeeded (`apply_paid`);
  a decline leaves the old plan, removes the proration item and tells the customer
  (`proration_not_paid`).
- Otherwise (no charge, or `--no-prorate`) the items are swapped at once.
- The customer and organisation subscription-adjusted notifications carry the proration
  amount (null when nothing was charged), keyed by subscription and effective date.

A new adjustment replaces one scheduled for the period end (as upstream: its future-dated
items never become active). Refused with exit 2 (AdjustmentRefused, saying the state): a
subscription that is not `active`, one whose period's due billing run is not charged yet or
with an adjustment still being charged, a price of another
organisation, currency or interval, a period-end change that would charge, a charge without a
payment method, subscriptions billed at period end (their proration is not implemented).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, select

from flowjobs import ids
from flowjobs.billing import enums as E
from flowjobs.billing import fees, repo
from flowjobs.billing.models import (
    BillingPeriod,
    BillingPeriodItem,
    BillingRun,
    Organization,
    Payment,
    Price,
    Subscription,
    SubscriptionItem,
)
from flowjobs.billing.money import MAX_AMOUNT
from flowjobs.billing.proration import Proration, prorate
from flowjobs.billing.repo import BillingError
from flowjobs.core.clock import iso_datetime
from flowjobs.errors import ExitStatus, NotFound

PRORATION_ITEM = "Proration: Net charge adjustment"
TIMINGS = ("immediately", "at-period-end", "auto")
PENDING_RUN = (
    E.BillingRunStatus.SCHEDULED,
    E.BillingRunStatus.IN_PROGRESS,
    E.BillingRunStatus.AWAITING_PAYMENT_CONFIRMATION,
)


class AdjustmentRefused(BillingError):
    """The subscription cannot be adjusted in its state, or the request is inconsistent."""

    exit_status = ExitStatus.BAD_INPUT


@dataclass
class AdjustReport:
    subscription_id: str
    action: str  # charging | applied | scheduled | unscheduled | unchanged | dry-run
    timing: str
    adjustment_type: str  # upgrade | downgrade; none when the items are those it has
    proration: Proration
    effective_at: datetime
    previous_items: list[dict]
    new_items: list[dict]
    billing_run_id: str | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "subscriptionId": self.subscription_id,
            "action": self.action,
            "timing": self.timing,
            "adjustmentType": self.adjustment_type,
            "effectiveAt": iso_datetime(self.effective_at),
            "proration": self.proration.as_dict(),
            "previousItems": self.previous_items,
            "newItems": self.new_items,
            "billingRunId": self.billing_run_id,
            "detail": self.detail or None,
            **self.extra,
        }


ADJUSTED = (  # the announcements of a change of items
    "send-customer-subscription-adjusted-notification",
    "send-organization-subscription-adjusted-notification",
)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _item_dict(name, price_id, unit_price, quantity) -> dict:
    return {
        "name": name or "",
        "priceId": price_id,
        "unitPrice": int(unit_price),
        "quantity": int(quantity),
    }


def _total(items: list[dict]) -> int:
    return sum(i["unitPrice"] * i["quantity"] for i in items)


def paid_in_period(s, period_id: str) -> int:
    """Σ pre-tax amount of the period's `processing` and `succeeded` payments (spec §7.7 sums
    their amounts; but the totals they are taken from are pre-tax, and tax is added on the net
    when it is charged, so a merchant of record's customer was short-charged by the tax paid)."""
    pretax = Payment.amount - func.coalesce(Payment.tax_amount, 0)
    return int(
        s.exec(
            select(func.coalesce(func.sum(pretax), 0)).where(
                Payment.billing_period_id == period_id,
                # refunded since (billing/refunds.py): still paid for the plan, as a payment
                # refunded in part counts in full (the two differed by a full period's charge)
                col(Payment.status).in_(
                    [
                        E.PaymentStatus.PROCESSING,
                        E.PaymentStatus.SUCCEEDED,
                        E.PaymentStatus.REFUNDED,
                    ]
                ),
            )
        ).one()
    )


def current_items(s, sub_id: str, at: datetime) -> list[SubscriptionItem]:
    return [
        i
        for i in repo.active_items(s, sub_id, at)
        if not i.manually_created and i.price_id is not None
    ]


def adjust_subscription(
    b,
    subscription_id: str,
    *,
    price_id: str,
    quantity: int = 1,
    timing: str = "auto",
    prorate_charge: bool = True,
    dry_run: bool = False,
) -> AdjustReport:
    timing = timing.replace("_", "-")
    if timing == "at-end-of-current-billing-period":
        timing = "at-period-end"
    if timing not in TIMINGS:
        raise AdjustmentRefused(f"--timing must be one of {', '.join(TIMINGS)}, not {timing!r}")
    if quantity < 1:
        raise AdjustmentRefused(f"--quantity must be at least 1, not {quantity}")
    with b.unit() as s:
        now = s.info["now"]
        # the row locked (PostgreSQL): a second change at the same time waits here, then sees
        # this one's adjustment run and is refused; both used to charge the proration
        sub = repo.lock_subscription(s, subscription_id)
        if sub is None:
            raise NotFound(f"no subscription {subscription_id!r}")
        period = _check_state(s, sub, now)
        price = _check_price(s, sub, price_id)
        if sub.is_free_plan and price.unit_price > 0:
            # its items were priced 0 (do_not_charge) and it was never billed: a paid plan is a
            # new subscription, as upstream's free → paid upgrade
            raise AdjustmentRefused(
                f"subscription {sub.id} is on a free plan and is never charged; a paid plan "
                f"({price.id}) starts a new subscription, it is not a change of this one"
            )
        if price.unit_price * quantity > MAX_AMOUNT:
            raise AdjustmentRefused(
                f"--quantity {quantity} of {price.id} comes to more than any charge can be "
                f"({MAX_AMOUNT} minor units)"
            )
        old = [
            _item_dict(i.name, i.price_id, i.unit_price, i.quantity)
            for i in current_items(s, sub.id, now)
        ]
        label = (price.name or "") + (f" x {quantity}" if quantity != 1 else "")
        new = [_item_dict(label, price.id, 0 if sub.do_not_charge else price.unit_price, quantity)]
        currency = s.get(Organization, sub.organization_id).default_currency
        old_total, new_total = _total(old), _total(new)
        proration = prorate(
            period.start_date,
            period.end_date,
            now,
            old_total,
            new_total,
            paid_in_period(s, period.id),
            currency,
        )
        kind = "upgrade" if new_total > old_total else "downgrade"
        chosen = (
            timing
            if timing != "auto"
            else ("at-period-end" if new_total < old_total else "immediately")
        )
        charge = proration.net if prorate_charge else 0
        report = AdjustReport(
            sub.id,
            "dry-run",
            chosen,
            kind,
            proration,
            period.end_date if chosen == "at-period-end" else now,
            old,
            new,
        )
        if [(i["priceId"], i["unitPrice"], i["quantity"]) for i in old] == [
            (i["priceId"], i["unitPrice"], i["quantity"]) for i in new
        ]:
            report.effective_at, report.adjustment_type = now, "none"  # not a downgrade
            if sub.scheduled_adjustment_at is not None:
                scheduled = iso_datetime(sub.scheduled_adjustment_at)
                if dry_run:  # says what the command would do
                    report.detail = (
                        f"the change scheduled for {scheduled} would be withdrawn; nothing changed"
                    )
                    return report
                report.action = "unscheduled"
                report.detail = (
                    f"the change scheduled for {scheduled} is withdrawn; the subscription keeps "
                    "these items"
                )
                unschedule(b, s, sub, now, "withdrawn: the scheduled change was withdrawn")
                return report
            report.action, report.detail = (
                "unchanged",
                "the subscription already has these items; nothing to do",
            )
            return report
        if chosen == "at-period-end" and sub.scheduled_adjustment_at == period.end_date:
            coming = current_items(s, sub.id, period.end_date)
            if [(i.price_id, i.unit_price, i.quantity) for i in coming] == [
                (i["priceId"], i["unitPrice"], i["quantity"]) for i in new
            ]:  # asked again: nothing to redo, nobody to tell twice
                report.action = "unchanged"
                report.detail = (
                    f"this change is already scheduled for {iso_datetime(period.end_date)}; "
                    "nothing to do"
                )
                return report
        if chosen == "at-period-end" and charge > 0:
            raise AdjustmentRefused(
                f"an end-of-period change must not charge now, and this one would charge "
                f"{proration.as_dict()['display']['net']}: use --timing immediately (or --no-prorate)"
            )
        if charge > 0 and not sub.run_billing_at_period_start:
            raise AdjustmentRefused(
                f"subscription {sub.id} is billed at period end; prorated charges are only "
                "supported for subscriptions billed at period start (use --no-prorate)"
            )
        method_id = sub.default_payment_method_id or sub.backup_payment_method_id
        if charge > 0 and not method_id:
            raise AdjustmentRefused(
                f"subscription {sub.id} has no payment method to charge the proration "
                f"({proration.as_dict()['display']['net']})"
            )
        if dry_run:
            report.detail = "nothing changed"
            return report
        if sub.scheduled_adjustment_at is not None:  # this request replaces the scheduled one
            report.extra["replaced"] = iso_datetime(sub.scheduled_adjustment_at)
            unschedule(b, s, sub, now, "withdrawn: the change was replaced")
        if chosen == "at-period-end":
            swap_items(s, sub, new, period.end_date)
            sub.scheduled_adjustment_at = period.end_date
            _notify(b, s, sub, kind, old, new, None, period.end_date, currency, asked_at=now)
            report.action = "scheduled"
            report.detail = (
                f"the new items take effect at the period's end, {iso_datetime(period.end_date)}"
            )
            return report
        if charge <= 0:
            swap_items(s, sub, new, now)
            sync_header(s, sub, now)
            _notify(b, s, sub, kind, old, new, None, now, currency)
            report.action, report.detail = "applied", "items swapped at once; nothing to charge"
            return report
        assert method_id  # a charge > 0 without one was refused above
        item = BillingPeriodItem(
            id=ids.new_id("billing_period_item"),
            livemode=sub.livemode,
            billing_period_id=period.id,
            quantity=1,
            unit_price=charge,
            name=PRORATION_ITEM,
            description="",
        )
        s.add(item)
        params = {
            "newItems": new,
            "previousItems": old,
            "prorationItemIds": [item.id],
            "prorationAmount": charge,
            "adjustmentType": kind,
            "effectiveDate": _ms(now),
            "currency": currency,
        }
        run = BillingRun(
            id=ids.new_id("billing_run"),
            livemode=sub.livemode,
            billing_period_id=period.id,
            scheduled_for=now,
            status=E.BillingRunStatus.SCHEDULED,
            subscription_id=sub.id,
            payment_method_id=method_id,
            is_adjustment=True,
            adjustment_params=params,
        )
        s.add(run)
        s.flush()
        # The payload is {billingRunId} as on every path to a billing run (one key, one payload):
        # the adjustmentParams travel on the run, so a retry or requeue has them too.
        b.queue_billing_run(s, run.id)
        report.action, report.billing_run_id = "charging", run.id
        taxed = fees.is_merchant_of_record(
            s.get(Organization, sub.organization_id).stripe_connect_contract_type
        )
        report.detail = (
            f"adjustment billing run {run.id} charges {proration.as_dict()['display']['net']}"
            f"{' plus tax' if taxed else ''}; the new items replace the old ones once it is paid"
        )
        return report


def _check_state(s, sub: Subscription, now: datetime) -> BillingPeriod:
    if sub.status != E.SubscriptionStatus.ACTIVE:
        raise AdjustmentRefused(
            f"subscription {sub.id} is {sub.status}; only active subscriptions can be adjusted"
        )
    if not sub.renews:
        raise AdjustmentRefused(
            f"subscription {sub.id} does not renew; it has no billing period to prorate"
        )
    if sub.cancel_scheduled_at is not None:
        raise AdjustmentRefused(
            f"subscription {sub.id} is to be canceled at {iso_datetime(sub.cancel_scheduled_at)}"
        )
    pending = s.exec(
        select(BillingRun.id, BillingRun.status).where(
            BillingRun.subscription_id == sub.id,
            BillingRun.is_adjustment == True,
            col(BillingRun.status).in_(list(PENDING_RUN)),
        )
    ).first()
    if pending is not None:
        raise AdjustmentRefused(
            f"subscription {sub.id} has an adjustment billing run {pending[0]} still "
            f"{pending[1]}; wait for its outcome"
        )
    period = s.exec(
        select(BillingPeriod)
        .where(
            BillingPeriod.subscription_id == sub.id,
            BillingPeriod.start_date <= now,
            BillingPeriod.end_date > now,
        )
        .order_by(col(BillingPeriod.start_date).desc())
    ).first()
    if period is None:
        raise AdjustmentRefused(
            f"subscription {sub.id} has no billing period containing now (its rollover is pending?)"
        )
    if period.trial_period:
        raise AdjustmentRefused(f"subscription {sub.id} is in a trial period; nothing to prorate")
    unbilled = s.exec(
        select(BillingRun.id, BillingRun.status).where(
            BillingRun.billing_period_id == period.id,
            BillingRun.is_adjustment == False,
            col(BillingRun.status).in_(list(PENDING_RUN)),
            BillingRun.scheduled_for <= now,
        )
    ).first()
    if repo.owes(s, sub.id):  # (uncancel keeps such a subscription past_due: defence in depth)
        raise AdjustmentRefused(
            f"subscription {sub.id}'s last charge was declined and no later one was paid; "
            "adjust once it is (billing retry, or a new payment method)"
        )
    if unbilled is not None:  # what was paid decides the proration: bill the period first
        raise AdjustmentRefused(
            f"subscription {sub.id}'s billing run {unbilled[0]} for this period is still "
            f"{unbilled[1]}; adjust once it is charged"
        )
    failed = _unpaid_failure(s, period.id)
    if failed is not None:  # its retry would charge the period again beside the proration
        raise AdjustmentRefused(
            f"subscription {sub.id}'s charge for this period failed (billing run {failed}) "
            "and is not paid yet; adjust once it is (billing retry, or a new payment method)"
        )
    return period


def _unpaid_failure(s, period_id: str) -> str | None:
    """A regular billing run of the period that failed while none succeeded (a declined card,
    or a run that gave up without charging): its retry, scheduled days ahead, bills the
    period's invoice in full, whatever a proration charged meanwhile. None when paid."""
    regular = (
        select(BillingRun.id, BillingRun.status)
        .where(BillingRun.billing_period_id == period_id, BillingRun.is_adjustment == False)
        .order_by(col(BillingRun.created_at), col(BillingRun.id))
    )
    runs = list(s.exec(regular))
    if any(status == E.BillingRunStatus.SUCCEEDED for _, status in runs):
        return None
    return next((id_ for id_, status in runs if status == E.BillingRunStatus.FAILED), None)


def _check_price(s, sub: Subscription, price_id: str) -> Price:
    price = s.get(Price, price_id)
    if price is None:
        raise NotFound(f"no price {price_id!r} (`billing list prices` lists them)")
    org = s.get(Organization, sub.organization_id)
    if price.livemode != sub.livemode or (
        price.product_id and _org_of_product(s, price) != sub.organization_id
    ):
        raise AdjustmentRefused(
            f"price {price.id} does not belong to subscription {sub.id}'s organization and mode"
        )
    if price.type != E.PriceType.SUBSCRIPTION or not price.active:
        raise AdjustmentRefused(
            f"price {price.id} is {'inactive' if not price.active else price.type}; "
            "a plan change needs an active subscription price"
        )
    if price.currency != org.default_currency:
        raise AdjustmentRefused(
            f"price {price.id} is in {price.currency}, the subscription in {org.default_currency}"
        )
    if (price.interval_unit, price.interval_count) != (sub.interval, sub.interval_count):
        raise AdjustmentRefused(
            f"price {price.id} renews every {price.interval_count} {price.interval_unit}, "
            f"the subscription every {sub.interval_count} {sub.interval}"
        )
    return price


def _org_of_product(s, price: Price) -> str | None:
    from flowjobs.billing.models import Product

    product = s.get(Product, price.product_id)
    return product.organization_id if product else None


def unschedule(b, s, sub: Subscription, now: datetime, reason: str) -> None:
    """Undo a scheduled adjustment: its future-dated items never become active, the items it
    was to replace no longer expire at the period end, and its announcements not yet sent are
    withdrawn (`reason`), in the same transaction."""
    when = sub.scheduled_adjustment_at
    if when is not None:
        for task in ADJUSTED:
            # no trailing "-": keys made before the request moment joined them end there
            b.withdraw(s, task, f"{task}-{sub.id}-{_ms(when)}", reason)
    for item in s.exec(select(SubscriptionItem).where(SubscriptionItem.subscription_id == sub.id)):
        if item.added_date > now:
            item.expired_at = item.added_date
        elif item.expired_at == when:
            item.expired_at = None
    sub.scheduled_adjustment_at = None
    s.flush()


def swap_items(s, sub: Subscription, new_items: list[dict], at: datetime) -> None:
    """Expire the items active at `at` then, and add `new_items` from `at`."""
    for item in current_items(s, sub.id, at):
        item.expired_at = at
    for n in new_items:
        s.add(
            SubscriptionItem(
                id=ids.new_id("si"),
                livemode=sub.livemode,
                subscription_id=sub.id,
                name=n["name"],
                added_date=at,
                price_id=n["priceId"],
                unit_price=n["unitPrice"],
                quantity=n["quantity"],
                type=E.SubscriptionItemType.STATIC,
            )
        )
    s.flush()


def sync_header(s, sub: Subscription, at: datetime) -> None:
    """The subscription's price, name and free-plan flag from its items active at `at`."""
    items = current_items(s, sub.id, at)
    if not items:
        return
    price_id = items[0].price_id
    assert price_id is not None  # current_items keeps only the items with a price
    price = s.get(Price, price_id)
    sub.price_id = price_id
    sub.name = price.name if price else sub.name
    sub.is_free_plan = sum(i.unit_price * i.quantity for i in items) == 0


def apply_scheduled(s, sub: Subscription, at: datetime) -> bool:
    """Rollover: an adjustment scheduled for the period end takes effect (its items were added
    from then); the subscription's header follows and the schedule is cleared."""
    if sub.scheduled_adjustment_at is None or sub.scheduled_adjustment_at > at:
        return False
    sync_header(s, sub, at)
    sub.scheduled_adjustment_at = None
    return True


def apply_paid(b, s, run: BillingRun, sub: Subscription) -> None:
    """The adjustment's payment succeeded (outcome transaction): swap the items, once, and
    send the adjusted notifications with the proration amount."""
    params = run.adjustment_params or {}
    at = datetime.fromtimestamp(params["effectiveDate"] / 1000, tz=UTC)
    if sub.status in E.SUBSCRIPTION_TERMINAL:  # canceled meanwhile: nothing to swap or announce
        return
    swap_items(s, sub, params["newItems"], at)
    sync_header(s, sub, at)
    _carry_into_later_periods(b, s, run, sub, params["newItems"])
    _notify(
        b,
        s,
        sub,
        params.get("adjustmentType", "upgrade"),
        params.get("previousItems", []),
        params["newItems"],
        params.get("prorationAmount"),
        at,
        params.get("currency"),
    )


def _carry_into_later_periods(b, s, run: BillingRun, sub: Subscription, new_items: list[dict]):
    """A plan change paid after its period rolled over (a bank debit that took days, a charge
    delayed past the period's end): the next period was opened with the old items. One not
    billed yet bills the new ones; one billed already (at the old price) is left as it is, and
    the organisation's operator is told (an alert) what it was billed and on which plan."""
    period = s.get(BillingPeriod, run.billing_period_id)
    if period is None:
        return
    later = s.exec(
        select(BillingPeriod)
        .where(
            BillingPeriod.subscription_id == sub.id,
            BillingPeriod.start_date >= period.end_date,
        )
        .order_by(col(BillingPeriod.start_date))
    ).all()
    for nxt in later:
        # Its scheduled regular runs locked first (PostgreSQL): a claim committed meanwhile is
        # seen below; one that comes after waits for this transaction, then bills the new items.
        s.execute(
            update(BillingRun)
            .where(
                col(BillingRun.billing_period_id) == nxt.id,
                col(BillingRun.is_adjustment) == False,
                col(BillingRun.status) == E.BillingRunStatus.SCHEDULED,
            )
            .values(updated_at=s.info["now"])
        )
        regular = s.exec(
            select(BillingRun.status).where(
                BillingRun.billing_period_id == nxt.id, BillingRun.is_adjustment == False
            )
        ).all()
        if any(status != E.BillingRunStatus.SCHEDULED for status in regular):
            b.trigger(
                s,
                "send-alert",
                {
                    "kind": "plan_change_after_billing",
                    "subject": f"Subscription {sub.id} changed plan after its next period was billed",
                    "text": f"The plan change of billing run {run.id} was paid after period "
                    f"{nxt.id} had been billed on the old plan; that period keeps what it was "
                    "billed. Adjust by hand if the new plan should apply to it.",
                    "details": {
                        "subscriptionId": sub.id,
                        "billingRunId": run.id,
                        "periodId": nxt.id,
                    },
                },
                key=f"alert:plan-change-after-billing:{run.id}:{nxt.id}",
            )
            continue
        for item in repo.period_items(s, nxt.id):
            if item.name != PRORATION_ITEM:
                s.delete(item)
        for n in new_items:
            s.add(repo.new_period_item(sub, nxt.id, n["name"], n["unitPrice"], n["quantity"]))


def proration_not_paid(b, s, run: BillingRun, sub: Subscription, invoice, payment) -> dict:
    """Declined (or canceled) proration: the subscription keeps its old plan; the proration item
    leaves the period and the adjustment invoice is voided; the customer and organisation are
    told the payment failed. No retry ladder, no `past_due`: nothing regular is owed."""
    from flowjobs.billing.outcomes import notify_payment_failed

    for item_id in (run.adjustment_params or {}).get("prorationItemIds", []):
        item = s.get(BillingPeriodItem, item_id)
        if item is not None:
            s.delete(item)
    if invoice is not None and invoice.status not in E.INVOICE_TERMINAL:
        invoice.status = E.InvoiceStatus.VOID
    if payment is not None and payment.status == E.PaymentStatus.FAILED:
        notify_payment_failed(b, s, payment, invoice)
    return {"next": f"proration not paid: subscription {sub.id} keeps its plan"}


def _notify(
    b,
    s,
    sub: Subscription,
    kind: str,
    old: list[dict],
    new: list[dict],
    proration: int | None,
    effective: datetime,
    currency: str | None,
    asked_at: datetime | None = None,
) -> None:
    payload = {
        "subscriptionId": sub.id,
        "customerId": sub.customer_id,
        "organizationId": sub.organization_id,
        "adjustmentType": kind,
        "previousItems": old,
        "newItems": new,
        "prorationAmount": proration,
        "effectiveDate": _ms(effective),
        "currency": currency,
    }
    # A change at once: keyed by its moment. One scheduled for later (`asked_at`): by the
    # moment it takes effect, the moment it was asked for and what it changes to, as one may
    # replace another for the same period end, even within a millisecond (`unschedule`
    # withdraws the replaced one's announcements by the first part).
    stamp = str(_ms(effective))
    if asked_at is not None:
        items = json.dumps(new, sort_keys=True, separators=(",", ":"))
        stamp += f"-{_ms(asked_at)}-{hashlib.sha256(items.encode()).hexdigest()[:12]}"
    for task in ADJUSTED:
        b.trigger(s, task, payload, key=f"{task}-{sub.id}-{stamp}")
