"""Executing a billing run (spec §7.4), so that it charges the card at most once.

1. **Claim + bookkeeping, one transaction.** `scheduled → started` with one conditional
   UPDATE that also records the flowjobs run executing it (`claimed_by_run`); in the same
   transaction the fee calculation, invoice (reused per period; number from a per-customer
   counter), line items and a `processing` payment row are written. Two executors can never
   both get past the claim: the loser sees `started` and stops.
2. **Charge, outside any transaction.** One PaymentIntent create-and-confirm, off-session,
   with the Stripe idempotency key `billing-run:<id>` and parameters rebuilt from the stored
   rows — so a retry of the same flowjobs run after a crash (it owns the claim) replays the
   very same request and Stripe answers with the first result instead of charging again.
3. **Outcome, one transaction** (flowjobs.billing.outcomes).

Nothing to charge (trial, 100 % discount, already paid) ends the run `succeeded` and the
invoice `paid` in step 1. A billing rule that refuses the run (no Stripe customer, no payment
method, unsupported adjustment) ends it `failed` with `error_details`, never a retry loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, update
from sqlmodel import select

from flowjobs.billing import enums as E
from flowjobs.billing import fees, repo
from flowjobs.billing.models import (BillingPeriod, BillingRun, Country, Customer, FeeCalculation,
                                     Invoice, InvoiceLineItem, Organization, Payment, PaymentMethod,
                                     Subscription)
from flowjobs.billing.periods import period_status_by_clock
from flowjobs.billing.repo import BillingError
from flowjobs.billing.totals import invoice_totals
from flowjobs.core import faults
from flowjobs.errors import NotFound
from flowjobs import ids


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

    @property
    def idempotency_key(self) -> str:
        return f"billing-run:{self.billing_run_id}"


@dataclass
class RunReport:
    billing_run_id: str
    action: str  # charged | declined | pending | nothing_to_charge | invoice_closed | skipped | failed
    status: str
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"billingRunId": self.billing_run_id, "action": self.action, "status": self.status,
                "detail": self.detail, **self.extra}


def execute_billing_run(b, billing_run_id: str, job_run_id: str) -> RunReport:
    from flowjobs.billing.outcomes import apply_charge_result

    try:
        step = _prepare(b, billing_run_id, job_run_id)
    except BillingError as exc:
        return fail_run(b, billing_run_id, exc)
    if isinstance(step, RunReport):
        return step
    result = b.gateway.charge_off_session(
        livemode=step.livemode, amount=step.amount, currency=step.currency, customer=step.customer,
        payment_method=step.payment_method, metadata=step.metadata,
        idempotency_key=step.idempotency_key, application_fee_amount=step.application_fee_amount,
        transfer_destination=step.transfer_destination, on_behalf_of=step.on_behalf_of)
    faults.checkpoint("billing-run.after-charge")
    return apply_charge_result(b, billing_run_id, result)


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
            payment = repo.payment_of_run(s, run.id)  # resuming after a crash: same charge again
            if payment is not None and payment.status == E.PaymentStatus.PROCESSING:
                return charge_request(s, run, payment)
        return _skipped(run)


def _claim(s, run: BillingRun, job_run_id: str) -> bool:
    now = s.info["now"]
    claimed = s.execute(update(BillingRun)
                        .where(BillingRun.id == run.id, BillingRun.status == E.BillingRunStatus.SCHEDULED)
                        .values(status=E.BillingRunStatus.IN_PROGRESS, claimed_by_run=job_run_id,
                                started_at=now, updated_at=now)).rowcount
    if claimed:
        s.refresh(run)
    return bool(claimed)


def _skipped(run: BillingRun) -> RunReport:
    owner = f" (claimed by run {run.claimed_by_run})" if run.claimed_by_run else ""
    return RunReport(run.id, "skipped", run.status, f"billing run is {run.status}{owner}; nothing to do")


def _bookkeeping(b, s, run: BillingRun) -> Charge | RunReport:
    now = s.info["now"]
    period = s.get(BillingPeriod, run.billing_period_id)
    sub = s.get(Subscription, run.subscription_id)
    org = s.get(Organization, sub.organization_id)
    customer = s.get(Customer, sub.customer_id)
    method = s.get(PaymentMethod, run.payment_method_id)
    if run.is_adjustment:
        raise BillingError("adjustment billing runs are not supported by this version")
    if sub.status in E.SUBSCRIPTION_TERMINAL or sub.do_not_charge:
        run.status = E.BillingRunStatus.ABORTED
        return RunReport(run.id, "skipped", run.status, f"subscription {sub.id} is {sub.status}; run aborted")
    if method is None:
        raise BillingError(f"payment method {run.payment_method_id} does not exist")
    result = _fees(b, s, run, sub, org, method)
    invoice = repo.first_invoice(s, period.id) or _new_invoice(s, run, sub, period, customer, result.currency)
    if invoice.status in E.INVOICE_TERMINAL:
        return _invoice_closed(s, run, period, invoice)
    _write_lines(s, invoice, period, run, result)
    s.add(_fee_row(run, org, period, method, result))
    money = invoice_totals(s, invoice)  # the invoice's money, as its PDF, emails and `billing show` read it
    to_charge = money.due
    if money.total <= 0 or to_charge <= 0:
        return _nothing_to_charge(s, run, period, invoice, now)
    _require_stripe(run, org, customer, method)
    payment = Payment(
        id=ids.new_id("pym"), livemode=run.livemode, invoice_id=invoice.id, amount=to_charge,
        payment_method=method.type, currency=invoice.currency, status=E.PaymentStatus.PROCESSING,
        charge_date=now, organization_id=org.id, customer_id=customer.id, subscription_id=sub.id,
        payment_method_id=method.id, billing_period_id=period.id, billing_run_id=run.id,
        subtotal=result.pretax_total, tax_amount=result.tax_amount, tax_country=_country(method))
    s.add(payment)
    repo.set_invoice_status(invoice, E.InvoiceStatus.OPEN)
    s.flush()
    return charge_request(s, run, payment)


def _fees(b, s, run, sub, org, method) -> fees.FeeResult:
    country = s.get(Country, org.country_id)
    redemption = repo.active_discount(s, sub.id)
    discount = fees.Discount(redemption.discount_amount_type, redemption.discount_amount) if redemption else None
    lifetime = s.exec(select(func.coalesce(func.sum(Payment.amount), 0)).where(
        Payment.organization_id == org.id, Payment.status.in_(list(E.PAYMENT_SETTLED)))).one()
    inputs = fees.FeeInputs(
        items=[(i.unit_price, i.quantity) for i in repo.period_items(s, run.billing_period_id)],
        currency=org.default_currency, payment_method_type=method.type,
        payment_method_country=_country(method), organization_country=country.code if country else None,
        fee_percentage=org.fee_percentage, contract_type=org.stripe_connect_contract_type,
        upfront_processing_credits=org.upfront_processing_credits, lifetime_settled_volume=int(lifetime),
        discount=discount)
    untaxed = fees.calculate(inputs)
    tax = 0
    if fees.is_merchant_of_record(org.stripe_connect_contract_type) and untaxed.pretax_total > 0:
        tax = b.tax.calculate(pretax_amount=untaxed.pretax_total, currency=inputs.currency,
                              customer_country=_country(method), organization_id=org.id,
                              livemode=run.livemode)
    return fees.calculate(inputs, tax)


def _country(method: PaymentMethod) -> str | None:
    return fees.payment_method_country(method.billing_details, method.payment_method_data)


def _new_invoice(s, run, sub, period, customer, currency) -> Invoice:
    now = s.info["now"]
    invoice = Invoice(
        id=ids.new_id("inv"), livemode=run.livemode, invoice_number=repo.allocate_invoice_number(s, customer),
        invoice_date=now, due_date=now, billing_period_id=period.id, customer_id=customer.id,
        organization_id=sub.organization_id, status=E.InvoiceStatus.DRAFT, subscription_id=sub.id,
        billing_run_id=run.id, billing_period_start_date=period.start_date,
        billing_period_end_date=period.end_date, type=E.InvoiceType.SUBSCRIPTION, currency=currency)
    s.add(invoice)
    return invoice


def _write_lines(s, invoice: Invoice, period, run, result: fees.FeeResult) -> None:
    for line in s.exec(select(InvoiceLineItem).where(InvoiceLineItem.invoice_id == invoice.id)):
        s.delete(line)
    for item in repo.period_items(s, period.id):
        if item.quantity <= 0:
            continue
        description = f"{item.name} - {item.description}" if item.description else item.name
        s.add(InvoiceLineItem(id=ids.new_id("inv_li"), livemode=run.livemode, invoice_id=invoice.id,
                              quantity=item.quantity, description=description, price=item.unit_price,
                              billing_run_id=run.id, type=E.SubscriptionItemType.STATIC))
    invoice.subtotal = result.pretax_total
    invoice.tax_amount = result.tax_amount
    invoice.application_fee = result.application_fee
    invoice.billing_run_id = run.id


def _fee_row(run, org, period, method, result: fees.FeeResult) -> FeeCalculation:
    return FeeCalculation(
        id=ids.new_id("feec"), livemode=run.livemode, organization_id=org.id,
        billing_period_id=period.id, billing_run_id=run.id, payment_method_type=method.type,
        base_amount=result.base_amount, discount_amount_fixed=result.discount_amount,
        pretax_total=result.pretax_total, tax_amount_fixed=result.tax_amount,
        flowglad_fee_percentage=result.flowglad_fee_percentage,
        mor_surcharge_percentage=result.mor_surcharge_percentage,
        international_fee_percentage=result.international_fee_percentage,
        payment_method_fee_fixed=result.payment_method_fee, application_fee=result.application_fee,
        currency=result.currency, type=E.FeeCalculationType.SUBSCRIPTION_PAYMENT,
        billing_address=method.billing_details, internal_notes="; ".join(result.notes) or None)


def _invoice_closed(s, run, period, invoice) -> RunReport:
    now = s.info["now"]
    run.status, run.completed_at = E.BillingRunStatus.SUCCEEDED, now
    if invoice.status in (E.InvoiceStatus.UNCOLLECTIBLE, E.InvoiceStatus.VOID):
        repo.set_period_status(period, E.BillingPeriodStatus.CANCELED)
    return RunReport(run.id, "invoice_closed", run.status, f"invoice {invoice.id} is {invoice.status}; no charge",
                     {"invoiceId": invoice.id})


def _nothing_to_charge(s, run, period, invoice, now) -> RunReport:
    run.status, run.completed_at = E.BillingRunStatus.SUCCEEDED, now
    repo.set_period_status(period, period_status_by_clock(period.start_date, period.end_date, now))
    repo.set_invoice_status(invoice, E.InvoiceStatus.PAID)
    return RunReport(run.id, "nothing_to_charge", run.status, "nothing due; invoice marked paid",
                     {"invoiceId": invoice.id})


def _require_stripe(run, org, customer, method) -> None:
    if not customer.stripe_customer_id:
        raise BillingError(f"customer {customer.id} has no Stripe customer id")
    if not method.stripe_payment_method_id:
        raise BillingError(f"payment method {method.id} has no Stripe payment method id")
    if run.livemode and not (org.stripe_account_id and org.payouts_enabled):
        raise BillingError(f"organization {org.id} cannot take live payments: "
                           "it needs a Stripe account with payouts enabled")


def charge_request(s, run: BillingRun, payment: Payment) -> Charge:
    """The charge request, rebuilt from stored rows so a resumed run sends identical parameters."""
    customer = s.get(Customer, payment.customer_id)
    method = s.get(PaymentMethod, payment.payment_method_id)
    org = s.get(Organization, payment.organization_id)
    fee = s.exec(select(FeeCalculation).where(FeeCalculation.billing_run_id == run.id)
                 .order_by(FeeCalculation.created_at.desc(), FeeCalculation.id)).first()
    metadata = {"billingRunId": run.id, "type": "billing_run", "billingPeriodId": run.billing_period_id,
                "flowglad_fee_percentage": fee.flowglad_fee_percentage,
                "mor_surcharge_percentage": fee.mor_surcharge_percentage,
                "international_fee_percentage": fee.international_fee_percentage,
                "tax_amount": str(fee.tax_amount_fixed)}
    charge = Charge(run.id, run.livemode, payment.amount, payment.currency, customer.stripe_customer_id,
                    method.stripe_payment_method_id, metadata)
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
        s.execute(update(BillingRun)
                  .where(BillingRun.id == billing_run_id,
                         BillingRun.status.in_([E.BillingRunStatus.SCHEDULED, E.BillingRunStatus.IN_PROGRESS]))
                  .values(status=E.BillingRunStatus.FAILED, error_details=details, updated_at=s.info["now"]))
        run = s.get(BillingRun, billing_run_id)
    return RunReport(billing_run_id, "failed", run.status if run else "missing", str(exc))
