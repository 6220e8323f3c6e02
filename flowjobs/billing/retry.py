"""`flowjobs billing retry BILLING_RUN_ID` (and the dashboard's "Retry this billing run"): try
a failed billing run's period again, now.

As upstream's manual "retry billing" (domain spec §7.6): a failed billing run is never executed
again; its period is billed by another billing run, due now, with the subscription's current
payment method (the operator has usually just fixed the card):

- the period already has a scheduled billing run (the retry ladder's next attempt): that run is
  charged now — its `scheduled_for` moved to now, its payment method brought up to date, its
  `attempt-billing-run` made due (`charge_now`) — so a period never has two runs waiting;
- otherwise (the ladder is used up): a new billing run, attempt number one past the period's
  last, `scheduled` for now, and `attempt-billing-run` triggered under its usual key.

Refused (`BadInput`, exit 2), naming the state: a billing run that is not `failed`; an
adjustment run (adjust the subscription again instead); a period that is already paid (a
succeeded billing run or a paid invoice: never a second charge for a period); a period being
charged right now (`started` / `awaiting_payment_confirmation`); a canceled subscription, a
`do_not_charge` one, or no payment method. Unknown id: `NotFound` (exit 3).

One transaction, the period's row locked first (`FOR UPDATE` on PostgreSQL; SQLite has one
writer), so two operators retrying at once make one billing run, not two.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from flowjobs import ids
from flowjobs.billing import enums as E
from flowjobs.billing import repo
from flowjobs.billing.charge_now import TASK, _trigger
from flowjobs.billing.models import BillingPeriod, BillingRun, Invoice, Subscription
from flowjobs.errors import BadInput, NotFound

CHARGING = (E.BillingRunStatus.IN_PROGRESS, E.BillingRunStatus.AWAITING_PAYMENT_CONFIRMATION)


@dataclass
class Retried:
    failed: str  # the failed billing run asked for
    billing_run: str  # the billing run that bills the period now
    created: bool  # a new billing run (else the period's scheduled one, charged now)
    run_id: str  # the flowjobs run that charges it
    status: str  # that run's status
    detail: str  # one sentence for the operator

    def as_dict(self) -> dict:
        """`billing retry --json`, in the billing commands' camelCase."""
        return {
            "failed": self.failed,
            "billingRunId": self.billing_run,
            "created": self.created,
            "runId": self.run_id,
            "status": self.status,
            "detail": self.detail or None,
        }


def retry_billing_run(b, billing_run_id: str) -> Retried:
    with b.unit() as s:
        run = s.get(BillingRun, billing_run_id)
        if run is None:
            raise NotFound(f"no billing run {billing_run_id!r}")
        _refuse_state(run)
        # lock the period: a second retry at the same time waits here, then sees our run
        period = repo.lock_period(s, run.billing_period_id)
        assert period is not None  # a run's period is never deleted
        sub = s.get(Subscription, run.subscription_id)
        _refuse_subscription(s, run, sub, period)
        others = list(
            s.exec(
                select(BillingRun)
                .where(BillingRun.billing_period_id == run.billing_period_id)
                .order_by(col(BillingRun.scheduled_for), col(BillingRun.id))
            )
        )
        _refuse_paid_or_charging(s, run, others)
        method = sub.default_payment_method_id or run.payment_method_id
        waiting = [r for r in others if r.status == E.BillingRunStatus.SCHEDULED]
        if waiting:
            target, created = waiting[0], False
            target.payment_method_id = method
            s.flush()
        else:
            target = BillingRun(
                id=ids.new_id("billing_run"),
                livemode=run.livemode,
                billing_period_id=run.billing_period_id,
                scheduled_for=s.info["now"],
                status=E.BillingRunStatus.SCHEDULED,
                stripe_payment_intent_id=run.stripe_payment_intent_id,
                attempt_number=max(r.attempt_number for r in others) + 1,
                subscription_id=run.subscription_id,
                payment_method_id=method,
                last_stripe_payment_intent_event_timestamp=run.last_stripe_payment_intent_event_timestamp,
            )
            s.add(target)
            s.flush()
            created = True
        charged = _trigger(b, s, target)
        how = (
            f"new billing run {target.id} (attempt {target.attempt_number})"
            if created
            else f"its scheduled billing run {target.id} (attempt {target.attempt_number}) charged now"
        )
        return Retried(
            run.id,
            target.id,
            created,
            charged.run_id,
            charged.status,
            f"billing run {run.id} failed; period {run.billing_period_id} is billed again by {how}: "
            f"run {charged.run_id} charges it",
        )


def _refuse_state(run: BillingRun) -> None:
    if run.status == E.BillingRunStatus.FAILED:
        if run.is_adjustment:
            raise BadInput(
                f"billing run {run.id} is a failed adjustment; adjustments are not retried: "
                f"adjust the subscription again (`flowjobs billing adjust {run.subscription_id} …`)"
            )
        return
    why = {
        E.BillingRunStatus.SUCCEEDED: "it has charged its period",
        E.BillingRunStatus.SCHEDULED: f"it has not run yet: charge it now with `flowjobs trigger billing-run {run.id}`",
        E.BillingRunStatus.IN_PROGRESS: "it is being charged now: wait for its outcome",
        E.BillingRunStatus.AWAITING_PAYMENT_CONFIRMATION: "its payment awaits confirmation: wait for its outcome",
        E.BillingRunStatus.ABORTED: "it was aborted (its subscription was canceled or its payment canceled)",
        E.BillingRunStatus.ABANDONED: "it was abandoned",
    }.get(E.BillingRunStatus(run.status), "")
    raise BadInput(
        f"billing run {run.id} is {run.status}; only a failed billing run is retried ({why})"
    )


def _refuse_subscription(
    s, run: BillingRun, sub: Subscription | None, period: BillingPeriod
) -> None:
    if sub is None:
        raise BadInput(f"billing run {run.id} names no existing subscription")
    # a period served before the end and still owed (repo.owed_once_ended) is retried as its
    # own runs are; the others of an ended subscription are no longer billed
    owed = repo.charge_standing(s, sub, period, s.info["now"]) is repo.ChargeStanding.OWED_AFTER_END
    if sub.status in E.SUBSCRIPTION_TERMINAL and not owed:
        raise BadInput(f"subscription {sub.id} is {sub.status}; its periods are no longer billed")
    if sub.do_not_charge:
        raise BadInput(f"subscription {sub.id} is not charged (do_not_charge); nothing to retry")
    if not (sub.default_payment_method_id or run.payment_method_id):
        raise BadInput(
            f"subscription {sub.id} has no payment method; add one before retrying billing run {run.id}"
        )


def _refuse_paid_or_charging(s, run: BillingRun, others: list[BillingRun]) -> None:
    for other in others:
        if other.status == E.BillingRunStatus.SUCCEEDED:
            raise BadInput(
                f"billing period {run.billing_period_id} is already paid (billing run {other.id} "
                "succeeded); it is never charged twice"
            )
        if other.status in CHARGING:
            raise BadInput(
                f"billing period {run.billing_period_id} is being charged by billing run {other.id} "
                f"({other.status}); wait for its outcome"
            )
    paid = s.exec(
        select(Invoice.id).where(
            Invoice.billing_period_id == run.billing_period_id,
            Invoice.status == E.InvoiceStatus.PAID,
        )
    ).first()
    if paid is not None:
        raise BadInput(
            f"billing period {run.billing_period_id} is already paid (invoice {paid}); "
            "it is never charged twice"
        )


__all__ = ["TASK", "Retried", "retry_billing_run"]
