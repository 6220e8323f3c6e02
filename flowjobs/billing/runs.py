"""Executing a billing run (spec §7.4), so that it charges the card at most once, whatever
crashes where and however late a retry comes.

1. **Claim + bookkeeping, one transaction.** `scheduled → started` with one conditional
   UPDATE that also records the flowjobs run executing it (`claimed_by_run`); in the same
   transaction the fee calculation, invoice (reused per period; number from a per-customer
   counter), line items and a `processing` payment row are written. Two executors can never
   both get past the claim: the loser sees `started` and stops.
2. **Create the PaymentIntent unconfirmed** (moves no money), Stripe idempotency key
   `billing-run:<run>:<payment>`, parameters rebuilt from the stored rows; **record its id** on
   the payment, invoice and run in a transaction of its own, fenced by the claim.
3. **Confirm it off-session**, after committing `confirm_sent_at`. A PaymentIntent can be
   charged once, so even a confirmation repeated after Stripe forgot the idempotency key
   (24 h) cannot charge twice; and no PaymentIntent is ever confirmed whose id is not recorded.
4. **Outcome, one transaction** (flowjobs.billing.outcomes).

A later attempt (after a crash, a timeout, a lost answer) never starts blind: it reads the
recorded PaymentIntent from Stripe first and confirms only one still `requires_confirmation`;
anything else is an outcome to record. A lost answer is recorded (`outcome_unknown_since`).

When the `attempt-billing-run` job fails for good, `settle-billing-run` (its failure hook)
calls `settle_failed_job`: charged → the outcome path; not charged → the PaymentIntent is
canceled at Stripe (a straggling confirmation can no longer charge), the payment `canceled`,
the billing run back to `scheduled` for a fresh attempt with a new payment — at most
`[billing] max_requeues` times, then `failed` and its retry ladder — with an alert each time.

Nothing to charge (trial, 100 % discount, already paid) ends the run `succeeded` and the
invoice `paid` in step 1. A billing rule that refuses the run (no Stripe customer, no payment
method, unsupported adjustment) ends it `failed` with `error_details`, never a retry loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, update
from sqlmodel import col, select

from flowjobs import faults, ids
from flowjobs.billing import discounts, fees, repo
from flowjobs.billing import enums as E
from flowjobs.billing.models import (
    BillingPeriod,
    BillingRun,
    Country,
    Customer,
    FeeCalculation,
    Invoice,
    InvoiceLineItem,
    Organization,
    Payment,
    PaymentMethod,
    Subscription,
)
from flowjobs.billing.periods import period_status_by_clock
from flowjobs.billing.repo import BillingError
from flowjobs.billing.totals import invoice_totals
from flowjobs.core.clock import iso_datetime
from flowjobs.errors import FlowjobsError, NotFound

log = logging.getLogger("flowjobs.billing")


class ClaimLost(FlowjobsError):
    """The billing run was settled or taken over while this attempt was charging; the attempt
    fails and its next try (if any) finds the run's new state."""


@dataclass
class Charge:
    billing_run_id: str
    livemode: bool
    amount: int
    currency: str
    customer: str
    payment_method: str
    metadata: dict[str, str]
    application_fee_amount: int | None = None
    transfer_destination: str | None = None
    on_behalf_of: str | None = None
    payment_id: str = ""
    payment_intent_id: str | None = None  # recorded before confirmation

    @property
    def idempotency_key(self) -> str:
        """Stripe key of the PaymentIntent's creation: one PaymentIntent per payment row."""
        return f"billing-run:{self.billing_run_id}:{self.payment_id}"

    @property
    def confirm_key(self) -> str:
        return f"{self.idempotency_key}:confirm"


@dataclass
class RunReport:
    billing_run_id: str
    action: str  # charged | declined | pending | nothing_to_charge | invoice_closed | skipped | failed | requeued
    status: str
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "billingRunId": self.billing_run_id,
            "action": self.action,
            "status": self.status,
            "detail": self.detail or None,
            **self.extra,
        }


def execute_billing_run(b, billing_run_id: str, job_run_id: str) -> RunReport:
    try:
        step = _prepare(b, billing_run_id, job_run_id)
    except BillingError as exc:
        return fail_run(b, billing_run_id, exc)
    if isinstance(step, RunReport):
        return step
    return _charge(b, step, job_run_id)


def _charge(b, charge: Charge, owner: str) -> RunReport:
    from flowjobs.adapters.stripe_gateway import StripeOutcomeUnknown, StripeRequestError
    from flowjobs.billing.outcomes import apply_charge_result

    gateway = b.gateway
    if charge.payment_intent_id is None:
        intent = gateway.create_payment_intent(
            livemode=charge.livemode,
            amount=charge.amount,
            currency=charge.currency,
            customer=charge.customer,
            payment_method=charge.payment_method,
            metadata=charge.metadata,
            idempotency_key=charge.idempotency_key,
            application_fee_amount=charge.application_fee_amount,
            transfer_destination=charge.transfer_destination,
            on_behalf_of=charge.on_behalf_of,
        )
        recorded = record_intent(b, charge, intent.payment_intent_id, owner)
        if recorded != intent.payment_intent_id:
            gateway.cancel_payment_intent(
                charge.livemode, intent.payment_intent_id
            )  # must never charge
            raise ClaimLost(
                f"billing run {charge.billing_run_id} moved on while its PaymentIntent was created "
                f"({intent.payment_intent_id} canceled)"
            )
        faults.checkpoint("billing-run.intent-recorded")
        charge.payment_intent_id = recorded
        state = intent
    else:  # an earlier attempt got this far: ask Stripe what became of it before anything else
        state = gateway.retrieve_payment_intent(charge.livemode, charge.payment_intent_id)
    if state.status != "requires_confirmation":
        return apply_charge_result(b, charge.billing_run_id, state)
    if not _mark_confirm_sent(b, charge, owner):
        raise ClaimLost(
            f"billing run {charge.billing_run_id} was settled by another run before its confirmation"
        )
    faults.checkpoint("billing-run.before-confirm")
    try:
        result = gateway.confirm_payment_intent(
            charge.livemode,
            charge.payment_intent_id,
            idempotency_key=charge.confirm_key,
            amount=charge.amount,
            currency=charge.currency,
        )
    except StripeOutcomeUnknown as exc:
        mark_outcome_unknown(b, charge.billing_run_id, str(exc))
        raise
    except StripeRequestError:  # e.g. it was canceled or confirmed meanwhile: Stripe knows
        result = gateway.retrieve_payment_intent(charge.livemode, charge.payment_intent_id)
        if result.status == "requires_confirmation":
            raise  # refused, and nothing happened: a real error
    faults.checkpoint("billing-run.after-charge")
    return apply_charge_result(b, charge.billing_run_id, result)


def _prepare(b, billing_run_id: str, job_run_id: str) -> Charge | RunReport:
    with b.unit() as s:
        run = s.get(BillingRun, billing_run_id)
        if run is None:
            raise NotFound(f"billing run {billing_run_id} does not exist")
        if run.status == E.BillingRunStatus.SCHEDULED:
            if not _claim(s, run, job_run_id):
                s.refresh(run)
                return _skipped(run)
            return _bookkeeping(b, s, run)
        if run.status == E.BillingRunStatus.IN_PROGRESS and run.claimed_by_run == job_run_id:
            payment = current_payment(s, run.id)  # resuming after a crash or a lost answer
            if payment is not None and payment.status == E.PaymentStatus.PROCESSING:
                if run.confirm_sent_at is not None and run.outcome_unknown_since is None:
                    run.outcome_unknown_since = s.info[
                        "now"
                    ]  # the attempt that confirmed never said
                return charge_request(s, run, payment)
        return _skipped(run)


def current_payment(s, billing_run_id: str) -> Payment | None:
    """The run's payment: the one not canceled (a run put back to `scheduled` keeps its
    canceled payment and makes a new one), else the newest."""
    return s.exec(
        select(Payment)
        .where(Payment.billing_run_id == billing_run_id)
        .order_by(
            case((col(Payment.status) == E.PaymentStatus.CANCELED, 1), else_=0),
            col(Payment.created_at).desc(),
            Payment.id,
        )
    ).first()


def record_intent(b, charge: Charge, intent_id: str, owner: str) -> str | None:
    """Record the PaymentIntent's id before it is confirmed, in its own transaction, if this
    attempt still owns the run and its payment has no other PaymentIntent. Returns the id
    recorded for the payment (ours, or one recorded by an earlier attempt), None if the
    claim is gone. Conditional UPDATEs, so a concurrent settlement is seen on both backends."""
    with b.unit() as s:
        owned = s.execute(
            update(BillingRun)
            .where(
                col(BillingRun.id) == charge.billing_run_id,
                col(BillingRun.status) == E.BillingRunStatus.IN_PROGRESS,
                col(BillingRun.claimed_by_run) == owner,
            )
            .values(updated_at=s.info["now"])
        ).rowcount
        if not owned:
            return None
        written = s.execute(
            update(Payment)
            .where(
                col(Payment.id) == charge.payment_id,
                col(Payment.status) == E.PaymentStatus.PROCESSING,
                col(Payment.stripe_payment_intent_id).is_(None),
            )
            .values(stripe_payment_intent_id=intent_id, updated_at=s.info["now"])
        ).rowcount
        payment = s.get(Payment, charge.payment_id)
        s.refresh(payment)
        if not written:
            return (
                payment.stripe_payment_intent_id
                if payment.status == E.PaymentStatus.PROCESSING
                else None
            )
        run = s.get(BillingRun, charge.billing_run_id)
        run.stripe_payment_intent_id = intent_id
        invoice = s.get(Invoice, payment.invoice_id)
        if invoice is not None:
            invoice.stripe_payment_intent_id = intent_id
        return intent_id


def _mark_confirm_sent(b, charge: Charge, owner: str) -> bool:
    with b.unit() as s:
        now = s.info["now"]
        live = s.execute(
            update(Payment)
            .where(
                col(Payment.id) == charge.payment_id,
                col(Payment.status) == E.PaymentStatus.PROCESSING,
                col(Payment.stripe_payment_intent_id) == charge.payment_intent_id,
            )
            .values(updated_at=now)
        ).rowcount
        if not live:
            return False
        return bool(
            s.execute(
                update(BillingRun)
                .where(
                    col(BillingRun.id) == charge.billing_run_id,
                    col(BillingRun.status) == E.BillingRunStatus.IN_PROGRESS,
                    col(BillingRun.claimed_by_run) == owner,
                )
                .values(confirm_sent_at=now, updated_at=now)
            ).rowcount
        )


def mark_outcome_unknown(b, billing_run_id: str, reason: str) -> None:
    """Record that a confirmation's answer was lost: the next attempt asks Stripe first."""
    with b.unit() as s:
        run = s.get(BillingRun, billing_run_id)
        if run is None or run.status in E.RUN_FINAL:
            return
        run.outcome_unknown_since = run.outcome_unknown_since or s.info["now"]
    log.warning(
        "billing run %s: the answer to its confirmation was lost (%s); the next attempt asks "
        "Stripe first",
        billing_run_id,
        reason,
    )


def _claim(s, run: BillingRun, job_run_id: str) -> bool:
    now = s.info["now"]
    claimed = s.execute(
        update(BillingRun)
        .where(col(BillingRun.id) == run.id, col(BillingRun.status) == E.BillingRunStatus.SCHEDULED)
        .values(
            status=E.BillingRunStatus.IN_PROGRESS,
            claimed_by_run=job_run_id,
            started_at=now,
            updated_at=now,
        )
    ).rowcount
    if claimed:
        s.refresh(run)
    return bool(claimed)


def _skipped(run: BillingRun) -> RunReport:
    owner = f" (claimed by run {run.claimed_by_run})" if run.claimed_by_run else ""
    return RunReport(
        run.id, "skipped", run.status, f"billing run is {run.status}{owner}; nothing to do"
    )


def _bookkeeping(b, s, run: BillingRun) -> Charge | RunReport:
    now = s.info["now"]
    period = s.get(BillingPeriod, run.billing_period_id)
    sub = s.get(Subscription, run.subscription_id)
    org = s.get(Organization, sub.organization_id)
    customer = s.get(Customer, sub.customer_id)
    method = s.get(PaymentMethod, run.payment_method_id)
    if run.is_adjustment and not (run.adjustment_params or {}).get("prorationItemIds"):
        raise BillingError("adjustment billing run has no adjustmentParams")
    ended = repo.charge_standing(s, sub, period, now) is repo.ChargeStanding.ENDED
    if ended or sub.do_not_charge:
        run.status, run.completed_at = E.BillingRunStatus.ABORTED, s.info["now"]
        return RunReport(
            run.id, "skipped", run.status, f"subscription {sub.id} is {sub.status}; run aborted"
        )
    if method is None:
        raise BillingError(f"payment method {run.payment_method_id} does not exist")
    result = _fees(b, s, run, sub, org, method)
    invoice = (
        (  # its own invoice, the same for every attempt of the run
            repo.invoice_of_run(s, run.id)
            or _new_invoice(s, run, sub, period, customer, result.currency)
        )
        if run.is_adjustment
        else repo.first_invoice(s, period.id)
        or _new_invoice(s, run, sub, period, customer, result.currency)
    )
    if invoice.status in E.INVOICE_TERMINAL or invoice.status in E.INVOICE_REFUNDED:
        return _invoice_closed(s, run, period, invoice)
    _write_lines(s, invoice, period, run, result)
    s.add(_fee_row(run, org, period, method, result))
    money = invoice_totals(
        s, invoice
    )  # the invoice's money, as its PDF, emails and `billing show` read it
    to_charge = money.due
    if money.total <= 0 or to_charge <= 0:
        return _nothing_to_charge(b, s, run, sub, period, invoice, now)
    _require_stripe(run, org, customer, method)
    payment = Payment(
        id=ids.new_id("pym"),
        livemode=run.livemode,
        invoice_id=invoice.id,
        amount=to_charge,
        payment_method=method.type,
        currency=invoice.currency,
        status=E.PaymentStatus.PROCESSING,
        charge_date=now,
        organization_id=org.id,
        customer_id=customer.id,
        subscription_id=sub.id,
        payment_method_id=method.id,
        billing_period_id=period.id,
        billing_run_id=run.id,
        subtotal=result.pretax_total,
        tax_amount=result.tax_amount,
        tax_country=_country(method),
    )
    s.add(payment)
    repo.set_invoice_status(invoice, E.InvoiceStatus.OPEN)
    s.flush()
    return charge_request(s, run, payment)


def _fees(b, s, run, sub, org, method) -> fees.FeeResult:
    country = s.get(Country, org.country_id)
    redemption = repo.active_discount(s, sub.id)
    discount = (
        fees.Discount(redemption.discount_amount_type, redemption.discount_amount)
        if redemption
        else None
    )
    lifetime = s.exec(
        select(func.coalesce(func.sum(Payment.amount), 0)).where(
            col(Payment.organization_id) == org.id, col(Payment.status).in_(list(E.PAYMENT_SETTLED))
        )
    ).one()
    inputs = fees.FeeInputs(
        items=[(i.unit_price, i.quantity) for i in run_items(s, run)],
        currency=org.default_currency,
        payment_method_type=method.type,
        payment_method_country=_country(method),
        organization_country=country.code if country else None,
        fee_percentage=org.fee_percentage,
        contract_type=org.stripe_connect_contract_type,
        upfront_processing_credits=org.upfront_processing_credits,
        lifetime_settled_volume=int(lifetime),
        discount=discount,
    )
    untaxed = fees.calculate(inputs)
    tax = 0
    if fees.is_merchant_of_record(org.stripe_connect_contract_type) and untaxed.pretax_total > 0:
        tax = b.tax.calculate(
            pretax_amount=untaxed.pretax_total,
            currency=inputs.currency,
            customer_country=_country(method),
            organization_id=org.id,
            livemode=run.livemode,
        )
    return fees.calculate(inputs, tax)


def run_items(s, run: BillingRun) -> list:
    """What a run bills: its period's items, except proration items (billed on their
    adjustment run's own invoice); an adjustment run only its proration item(s)."""
    from flowjobs.billing.adjust import PRORATION_ITEM

    items = repo.period_items(s, run.billing_period_id)
    if run.is_adjustment:
        ids_ = set((run.adjustment_params or {}).get("prorationItemIds", []))
        return [i for i in items if i.id in ids_]
    return [i for i in items if i.name != PRORATION_ITEM]


def _country(method: PaymentMethod) -> str | None:
    return fees.payment_method_country(method.billing_details, method.payment_method_data)


def _new_invoice(s, run, sub, period, customer, currency) -> Invoice:
    now = s.info["now"]
    invoice = Invoice(
        id=ids.new_id("inv"),
        livemode=run.livemode,
        invoice_number=repo.allocate_invoice_number(s, customer),
        invoice_date=now,
        due_date=now,
        billing_period_id=period.id,
        customer_id=customer.id,
        organization_id=sub.organization_id,
        status=E.InvoiceStatus.DRAFT,
        subscription_id=sub.id,
        billing_run_id=run.id,
        billing_period_start_date=period.start_date,
        billing_period_end_date=period.end_date,
        type=E.InvoiceType.SUBSCRIPTION,
        currency=currency,
    )
    s.add(invoice)
    return invoice


def _write_lines(s, invoice: Invoice, period, run, result: fees.FeeResult) -> None:
    for line in s.exec(select(InvoiceLineItem).where(InvoiceLineItem.invoice_id == invoice.id)):
        s.delete(line)
    for item in run_items(s, run):
        if item.quantity <= 0:
            continue
        description = f"{item.name} - {item.description}" if item.description else item.name
        s.add(
            InvoiceLineItem(
                id=ids.new_id("inv_li"),
                livemode=run.livemode,
                invoice_id=invoice.id,
                quantity=item.quantity,
                description=description,
                price=item.unit_price,
                billing_run_id=run.id,
                type=E.SubscriptionItemType.STATIC,
            )
        )
    invoice.subtotal = result.pretax_total
    invoice.tax_amount = result.tax_amount
    invoice.application_fee = result.application_fee
    invoice.billing_run_id = run.id


def _fee_row(run, org, period, method, result: fees.FeeResult) -> FeeCalculation:
    return FeeCalculation(
        id=ids.new_id("feec"),
        livemode=run.livemode,
        organization_id=org.id,
        billing_period_id=period.id,
        billing_run_id=run.id,
        payment_method_type=method.type,
        base_amount=result.base_amount,
        discount_amount_fixed=result.discount_amount,
        pretax_total=result.pretax_total,
        tax_amount_fixed=result.tax_amount,
        flowglad_fee_percentage=result.flowglad_fee_percentage,
        mor_surcharge_percentage=result.mor_surcharge_percentage,
        international_fee_percentage=result.international_fee_percentage,
        payment_method_fee_fixed=result.payment_method_fee,
        application_fee=result.application_fee,
        currency=result.currency,
        type=E.FeeCalculationType.SUBSCRIPTION_PAYMENT,
        billing_address=method.billing_details,
        internal_notes="; ".join(result.notes) or None,
    )


def _invoice_closed(s, run, period, invoice) -> RunReport:
    now = s.info["now"]
    run.status, run.completed_at = E.BillingRunStatus.SUCCEEDED, now
    if not run.is_adjustment and invoice.status in (  # a proration's invoice is not the period's
        E.InvoiceStatus.UNCOLLECTIBLE,
        E.InvoiceStatus.VOID,
    ):
        repo.set_period_status(period, E.BillingPeriodStatus.CANCELED)
    return RunReport(
        run.id,
        "invoice_closed",
        run.status,
        f"invoice {invoice.id} is {invoice.status}; no charge",
        {"invoiceId": invoice.id},
    )


def _nothing_to_charge(b, s, run, sub, period, invoice, now) -> RunReport:
    """Nothing due (a discount or credit covers it): settled as paid, as a charge would be — a
    plan change's new items take effect, a discount's use is counted."""
    run.status, run.completed_at = E.BillingRunStatus.SUCCEEDED, now
    repo.set_period_status(period, period_status_by_clock(period.start_date, period.end_date, now))
    repo.set_invoice_status(invoice, E.InvoiceStatus.PAID)
    if run.is_adjustment:
        from flowjobs.billing.adjust import apply_paid

        apply_paid(b, s, run, sub)
    else:
        discounts.redeem(s, run)
    return RunReport(
        run.id,
        "nothing_to_charge",
        run.status,
        "nothing due; invoice marked paid",
        {"invoiceId": invoice.id},
    )


def _require_stripe(run, org, customer, method) -> None:
    if not customer.stripe_customer_id:
        raise BillingError(f"customer {customer.id} has no Stripe customer id")
    if not method.stripe_payment_method_id:
        raise BillingError(f"payment method {method.id} has no Stripe payment method id")
    if run.livemode and not (org.stripe_account_id and org.payouts_enabled):
        raise BillingError(
            f"organization {org.id} cannot take live payments: "
            "it needs a Stripe account with payouts enabled"
        )


def charge_request(s, run: BillingRun, payment: Payment) -> Charge:
    """The charge request, rebuilt from stored rows so a resumed run sends identical parameters,
    with the PaymentIntent already recorded for this payment, if any."""
    customer = s.get(Customer, payment.customer_id)
    method = s.get(PaymentMethod, payment.payment_method_id)
    org = s.get(Organization, payment.organization_id)
    fee = s.exec(
        select(FeeCalculation)
        .where(FeeCalculation.billing_run_id == run.id)
        .order_by(col(FeeCalculation.created_at).desc(), col(FeeCalculation.id))
    ).first()
    metadata = {
        "billingRunId": run.id,
        "paymentId": payment.id,
        "type": "billing_run",
        "billingPeriodId": run.billing_period_id,
        "flowglad_fee_percentage": fee.flowglad_fee_percentage,
        "mor_surcharge_percentage": fee.mor_surcharge_percentage,
        "international_fee_percentage": fee.international_fee_percentage,
        "tax_amount": str(fee.tax_amount_fixed),
    }
    charge = Charge(
        run.id,
        run.livemode,
        payment.amount,
        payment.currency,
        customer.stripe_customer_id,
        method.stripe_payment_method_id,
        metadata,
        payment_id=payment.id,
        payment_intent_id=payment.stripe_payment_intent_id,
    )
    if run.livemode:
        charge.application_fee_amount = min(fee.application_fee, payment.amount)
        charge.transfer_destination = org.stripe_account_id
        if org.stripe_connect_contract_type == E.StripeConnectContractType.PLATFORM:
            charge.on_behalf_of = org.stripe_account_id
    return charge


def fail_run(b, billing_run_id: str, exc: BaseException) -> RunReport:
    """Mark a run that billing rules refused `failed`, with the reason, if still unclaimed."""
    details = {"message": str(exc), "name": type(exc).__name__}
    with b.unit() as s:
        s.execute(
            update(BillingRun)
            .where(
                col(BillingRun.id) == billing_run_id,
                col(BillingRun.status).in_(
                    [E.BillingRunStatus.SCHEDULED, E.BillingRunStatus.IN_PROGRESS]
                ),
            )
            .values(
                status=E.BillingRunStatus.FAILED,
                error_details=details,
                updated_at=s.info["now"],
                completed_at=s.info["now"],
            )
        )
        run = s.get(BillingRun, billing_run_id)
    return RunReport(billing_run_id, "failed", run.status if run else "missing", str(exc))


# -- settling a billing run whose job failed for good (the `settle-billing-run` failure hook),
#    or that fail-stale-payments found uncharged ------------------------------------------------


def settle_failed_job(
    b,
    billing_run_id: str,
    failed_job_id: str | None,
    error: str | None = None,
    *,
    alert: bool = False,
) -> RunReport:
    """Settle a billing run whose `attempt-billing-run` job `failed_job_id` failed for good.

    Stripe is asked first: charged (or declined, or pending) → that outcome is recorded
    through the outcome path; never charged → the run goes back to `scheduled` for a fresh
    attempt (bounded, see `requeue`). A run that job did not own is left alone; `failed_job_id`
    None (fail-stale-payments) settles whoever owned it."""
    from flowjobs.billing.outcomes import apply_charge_result

    with b.unit() as s:
        run = s.get(BillingRun, billing_run_id)
        if run is None:
            return RunReport(billing_run_id, "skipped", "missing", "no such billing run")
        if run.status == E.BillingRunStatus.SCHEDULED:
            return requeue(
                b, s, run, None, error, alert=alert
            )  # never claimed: nobody else will run it
        if run.status != E.BillingRunStatus.IN_PROGRESS or (
            failed_job_id is not None and run.claimed_by_run not in (failed_job_id, None)
        ):
            return _skipped(run)
        payment = current_payment(s, run.id)
        if payment is None or payment.status != E.PaymentStatus.PROCESSING:
            return RunReport(
                run.id,
                "skipped",
                run.status,
                "its payment's outcome is already recorded; fail-stale-payments follows it up",
            )
        owner, payment_id = run.claimed_by_run, payment.id
        intent_id, livemode = payment.stripe_payment_intent_id, run.livemode
    if intent_id is None:
        report = _requeue_if_no_intent(b, billing_run_id, owner, payment_id, error, alert)
        if report is not None:
            return report
        with b.unit() as s:  # an attempt recorded its PaymentIntent meanwhile: reconcile it
            intent_id = s.get(Payment, payment_id).stripe_payment_intent_id
    state = b.gateway.retrieve_payment_intent(livemode, intent_id)
    if state.status == "requires_confirmation":  # never confirmed: make sure it never will be
        state = b.gateway.cancel_payment_intent(livemode, intent_id)
    if state.status == "canceled":
        with b.unit() as s:
            run = s.get(BillingRun, billing_run_id)
            payment = s.get(Payment, payment_id)
            if run.status != E.BillingRunStatus.IN_PROGRESS or run.claimed_by_run != owner:
                return _skipped(run)
            repo.set_payment_status(payment, E.PaymentStatus.CANCELED)
            return requeue(
                b,
                s,
                run,
                payment,
                error,
                alert=alert,
                why=f"PaymentIntent {intent_id} was never confirmed; canceled",
            )
    report = apply_charge_result(b, billing_run_id, state)
    report.extra["reconciled"] = True
    return report


def _requeue_if_no_intent(b, billing_run_id, owner, payment_id, error, alert) -> RunReport | None:
    """No PaymentIntent recorded, so none was ever confirmed: nothing was charged. The payment
    is canceled only if still without one (a conditional UPDATE: an attempt recording its
    PaymentIntent at this moment loses, or wins and is reconciled instead)."""
    with b.unit() as s:
        canceled = s.execute(
            update(Payment)
            .where(
                Payment.id == payment_id,
                col(Payment.status) == E.PaymentStatus.PROCESSING,
                col(Payment.stripe_payment_intent_id).is_(None),
            )
            .values(status=E.PaymentStatus.CANCELED, updated_at=s.info["now"])
        ).rowcount
        if not canceled:
            return None
        run = s.get(BillingRun, billing_run_id)
        s.refresh(run)
        if run.status != E.BillingRunStatus.IN_PROGRESS or run.claimed_by_run != owner:
            return _skipped(run)
        return requeue(
            b,
            s,
            run,
            s.get(Payment, payment_id),
            error,
            alert=alert,
            why="no PaymentIntent was recorded, so none was confirmed",
        )


def requeue(
    b,
    s,
    run: BillingRun,
    payment: Payment | None,
    error: str | None,
    *,
    alert: bool,
    why: str = "its job failed before claiming it",
) -> RunReport:
    """Uncharged: back to `scheduled` with `attempt-billing-run` triggered for `requeue_after`
    × n from now — at most `[billing] max_requeues` times; after that the run ends `failed`
    (no customer email: the customer did nothing wrong) and its retry ladder schedules the next
    run. Either way an alert names the billing run."""
    from flowjobs.billing.outcomes import schedule_retry

    now = s.info["now"]
    settings = b.settings
    run.requeues = (run.requeues or 0) + 1
    cause = f"{why}; the job failed: {error}" if error else why
    details = {
        "billingRunId": run.id,
        "requeues": run.requeues,
        "paymentId": payment.id if payment else None,
        "error": error,
    }
    if run.requeues > settings.max_requeues:
        run.status, run.completed_at = E.BillingRunStatus.FAILED, now
        run.error_details = {
            "name": "NotCharged",
            "message": f"gave up after {run.requeues} failed jobs: {cause}",
        }
        run.outcome_unknown_since = None
        sub = s.get(Subscription, run.subscription_id)
        if run.is_adjustment:  # a plan change never charged: the old plan stays, no ladder
            from flowjobs.billing.adjust import proration_not_paid

            proration_not_paid(
                b, s, run, sub, s.get(Invoice, payment.invoice_id) if payment else None, None
            )
        retry = None if run.is_adjustment else schedule_retry(b, s, run, sub, now)
        nxt = (
            f"retry billing run {retry.id} on {iso_datetime(retry.scheduled_for)}"
            if retry
            else "no retry left"
        )
        _alert(
            b,
            s,
            alert,
            f"alert:billing-run-gave-up:{run.id}",
            "billing_run_gave_up",
            f"Billing run {run.id} failed without charging ({nxt})",
            f"Billing run {run.id} was not charged: {cause}. It was put back {run.requeues - 1} time(s) "
            f"and failed each time, so it ends failed; {nxt}.",
            details,
        )
        return RunReport(
            run.id,
            "failed",
            run.status,
            cause,
            {
                "next": nxt,
                "requeues": run.requeues,
                "retryBillingRunId": retry.id if retry else None,
            },
        )
    run.status, run.claimed_by_run = E.BillingRunStatus.SCHEDULED, None
    run.confirm_sent_at = run.outcome_unknown_since = None
    at = now + timedelta(seconds=settings.requeue_after * run.requeues)
    s.flush()
    b.queue_billing_run(s, run.id, at)
    _alert(
        b,
        s,
        alert,
        f"alert:billing-run-requeued:{run.id}:{run.requeues}",
        "billing_run_requeued",
        f"Billing run {run.id} was not charged; tried again at {iso_datetime(at)}",
        f"Billing run {run.id} was not charged: {cause}. It is scheduled again "
        f"({run.requeues} of at most {settings.max_requeues}) for {iso_datetime(at)}.",
        details,
    )
    return RunReport(
        run.id, "requeued", run.status, cause, {"requeues": run.requeues, "runAt": iso_datetime(at)}
    )


def _alert(
    b, s, enabled: bool, key: str, kind: str, subject: str, text: str, details: dict
) -> None:
    if enabled:
        b.trigger(
            s,
            "send-alert",
            {"kind": kind, "subject": subject, "text": text, "details": details},
            key=key,
        )
