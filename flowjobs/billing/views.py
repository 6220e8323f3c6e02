"""Read models for `flowjobs billing show` and the demo summary: plain dicts of rows.

An invoice (and a billing run, through its invoice) also shows its `money` — lines, discount,
subtotal, tax, total, paid and due — from flowjobs.billing.totals, the function the billing
run charges with and the PDFs and emails print.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlmodel import func, select

from flowjobs.billing import enums as E
from flowjobs.billing.models import (BillingPeriod, BillingRun, Invoice, InvoiceLineItem, Payment,
                                     Subscription)
from flowjobs.billing.totals import invoice_totals
from flowjobs.errors import BadInput, NotFound

KINDS = {"subscription": Subscription, "invoice": Invoice, "billing-run": BillingRun}


def row(obj) -> dict:
    data = obj.model_dump(by_alias=False)
    return {k.rstrip("_"): (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()}


def _all(s, model, *where, order=None):
    return [row(r) for r in s.exec(select(model).where(*where).order_by(order or model.created_at, model.id))]


def show(b, kind: str, object_id: str) -> dict:
    model = KINDS.get(kind)
    if model is None:
        raise BadInput(f"unknown kind {kind!r}; use one of: {', '.join(KINDS)}")
    with b.unit() as s:
        obj = s.get(model, object_id)
        if obj is None:
            raise NotFound(f"no {kind} {object_id!r}")
        if kind == "subscription":
            return {"subscription": row(obj),
                    "billingPeriods": _all(s, BillingPeriod, BillingPeriod.subscription_id == obj.id,
                                           order=BillingPeriod.start_date),
                    "billingRuns": _all(s, BillingRun, BillingRun.subscription_id == obj.id,
                                        order=BillingRun.scheduled_for),
                    "invoices": _all(s, Invoice, Invoice.subscription_id == obj.id),
                    "payments": _all(s, Payment, Payment.subscription_id == obj.id)}
        if kind == "invoice":
            return {"invoice": row(obj), "money": invoice_totals(s, obj).as_dict(),
                    "lineItems": _all(s, InvoiceLineItem, InvoiceLineItem.invoice_id == obj.id),
                    "payments": _all(s, Payment, Payment.invoice_id == obj.id)}
        invoices = _all(s, Invoice, Invoice.billing_period_id == obj.billing_period_id)
        payment = s.exec(select(Payment).where(Payment.billing_run_id == obj.id)
                         .order_by(Payment.created_at.desc(), Payment.id)).first()
        invoice_id = payment.invoice_id if payment else (invoices[0]["id"] if invoices else None)
        money = invoice_totals(s, invoice_id).as_dict() if invoice_id else None
        return {"billingRun": row(obj), "money": money,
                "payments": _all(s, Payment, Payment.billing_run_id == obj.id),
                "invoices": invoices}


def billing_run_status(b, billing_run_id: str) -> str:
    with b.unit() as s:
        run = s.get(BillingRun, billing_run_id)
        if run is None:
            raise NotFound(f"no billing run {billing_run_id!r}")
        return run.status


def summary(b) -> dict:
    """What the billing jobs produced: runs, payments, invoices and subscriptions by status."""
    with b.unit() as s:
        def by_status(model):
            return dict(Counter({k: v for k, v in s.exec(select(model.status, func.count()).group_by(model.status))}))

        runs = by_status(BillingRun)
        retries = s.exec(select(func.count()).where(BillingRun.status == E.BillingRunStatus.SCHEDULED,
                                                    BillingRun.attempt_number > 1)).one()
        collected = s.exec(select(Payment.currency, func.sum(Payment.amount))
                           .where(Payment.status == E.PaymentStatus.SUCCEEDED).group_by(Payment.currency)).all()
        return {"billingRuns": runs, "retriesScheduled": int(retries), "payments": by_status(Payment),
                "collected": {currency: int(total) for currency, total in collected},
                "invoices": by_status(Invoice), "subscriptions": by_status(Subscription)}
