"""How a subscription's discount is used up by its billing runs (spec §7.5, §8.2).

A billing run applies the subscription's first redemption not fully redeemed
(`repo.active_discount`). Each regular run settled with that discount applied — charged, or
nothing left to charge — is one use: a `once` redemption is then fully redeemed, a
`number_of_payments` one when its uses (with the checkout payment of its purchase, which
`purchases.advance_redemption` counts) reach the number; a `forever` one never is. Upstream
advanced redemptions on checkout payments only, so a one-month coupon discounted every month.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import col, select

from flowjobs.billing import enums as E
from flowjobs.billing import repo
from flowjobs.billing.models import BillingRun, DiscountRedemption, FeeCalculation, Payment


def redeem(s, run: BillingRun) -> DiscountRedemption | None:
    """Count `run`'s use of the discount it applied (a regular run, settled in this transaction).
    Returns the redemption it used, or None when it applied none."""
    if run.is_adjustment or not _discounted(s, run.id):
        return None
    redemption = repo.active_discount(s, run.subscription_id)
    if redemption is None or redemption.duration == E.DiscountDuration.FOREVER:
        return redemption
    if redemption.duration == E.DiscountDuration.ONCE:
        redemption.fully_redeemed = True
    elif redemption.duration == E.DiscountDuration.NUMBER_OF_PAYMENTS:
        s.flush()  # this run's settlement counts
        if _uses(s, run.subscription_id, redemption) >= (redemption.number_of_payments or 1):
            redemption.fully_redeemed = True
    return redemption


def _discounted(s, run_id: str) -> bool:
    """Whether the run's newest fee calculation (its bookkeeping) took a discount off."""
    fee = s.exec(
        select(FeeCalculation.discount_amount_fixed)
        .where(FeeCalculation.billing_run_id == run_id)
        .order_by(col(FeeCalculation.created_at).desc(), col(FeeCalculation.id).desc())
    ).first()
    return bool(fee)


def _uses(s, subscription_id: str, redemption: DiscountRedemption) -> int:
    """Regular runs of the subscription settled with a discount since the redemption was made
    (by when they settled, not when they were made),
    and the succeeded payments of its purchase (the checkout that paid the first period)."""
    discounted = (
        select(FeeCalculation.billing_run_id)
        .where(col(FeeCalculation.discount_amount_fixed) > 0)
        .where(col(FeeCalculation.billing_run_id).is_not(None))
    )
    runs = s.exec(
        select(func.count(col(BillingRun.id))).where(
            BillingRun.subscription_id == subscription_id,
            BillingRun.is_adjustment == False,
            BillingRun.status == E.BillingRunStatus.SUCCEEDED,
            # settled since it was made (a run made earlier may take it: billing at period end)
            func.coalesce(BillingRun.completed_at, BillingRun.updated_at) >= redemption.created_at,
            col(BillingRun.id).in_(discounted),
        )
    ).one()
    paid_at_checkout = 0
    if redemption.purchase_id:
        paid_at_checkout = s.exec(
            select(func.count(col(Payment.id))).where(
                Payment.purchase_id == redemption.purchase_id,
                col(Payment.billing_run_id).is_(None),
                col(Payment.status).in_(list(E.PAYMENT_SETTLED)),  # refunded since: still a use
            )
        ).one()
    return int(runs) + int(paid_at_checkout)
