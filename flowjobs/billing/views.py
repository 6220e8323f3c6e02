"""Read models for `flowjobs billing show|list` and the demo summary: plain dicts of rows.

Rows keep minor units and ISO dates (the `--json` form); `display` turns one into the text
form: money as money in its currency (`$199.00`), fields in a fixed order (id, status, the
model's columns, created/updated last).

An invoice (and a billing run, through its invoice) also shows its `money` — lines, discount,
subtotal, tax, total, paid and due — from flowjobs.billing.totals, the function the billing
run charges with and the PDFs and emails print.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import col, func, select

from flowjobs.billing import enums as E
from flowjobs.billing import repo
from flowjobs.billing.models import (
    BillingPeriod,
    BillingRun,
    Customer,
    Invoice,
    InvoiceLineItem,
    Organization,
    Payment,
    Price,
    Product,
    Purchase,
    Subscription,
    SubscriptionItem,
)
from flowjobs.billing.money import format_money
from flowjobs.billing.totals import invoice_totals
from flowjobs.core.clock import iso_datetime
from flowjobs.errors import BadInput, NotFound

KINDS = {
    "subscription": Subscription,
    "invoice": Invoice,
    "billing-run": BillingRun,
    "purchase": Purchase,
    "customer": Customer,
}


def row(obj) -> dict:
    data = obj.model_dump(by_alias=False)
    return {
        k.rstrip("_"): (iso_datetime(v) if isinstance(v, datetime) else v) for k, v in data.items()
    }


def _all(s, model, *where, order=None):
    return [
        row(r)
        for r in s.exec(select(model).where(*where).order_by(order or model.created_at, model.id))
    ]


def _items(s, subscription_id: str) -> list[dict]:
    """A subscription's items, each with its price's currency: an item's unit_price is money, and
    money goes with its currency code (the item row has none of its own)."""
    items = _all(
        s,
        SubscriptionItem,
        SubscriptionItem.subscription_id == subscription_id,
        order=SubscriptionItem.added_date,
    )
    price_ids = {i["price_id"] for i in items if i.get("price_id")}
    currencies = dict(
        s.exec(select(Price.id, Price.currency).where(col(Price.id).in_(price_ids))).all()
        if price_ids
        else []
    )
    for item in items:
        if item.get("price_id") in currencies:
            item["currency"] = currencies[item["price_id"]]
    return items


def show(b, kind: str, object_id: str) -> dict:
    model = KINDS.get(kind)
    if model is None:
        raise BadInput(f"unknown kind {kind!r}; use one of: {', '.join(KINDS)}")
    with b.unit() as s:
        obj = s.get(model, object_id)
        if obj is None:
            raise NotFound(f"no {kind} {object_id!r}")
        if kind == "subscription":
            return {
                "subscription": row(obj),
                "billingPeriods": _all(
                    s,
                    BillingPeriod,
                    BillingPeriod.subscription_id == obj.id,
                    order=BillingPeriod.start_date,
                ),
                "billingRuns": _all(
                    s,
                    BillingRun,
                    BillingRun.subscription_id == obj.id,
                    order=BillingRun.scheduled_for,
                ),
                "invoices": _all(s, Invoice, Invoice.subscription_id == obj.id),
                "payments": _all(s, Payment, Payment.subscription_id == obj.id),
                # every item, those a scheduled change brings in (added at its date) included
                "items": _items(s, obj.id),
            }
        if kind == "customer":  # what the customer has: subscriptions, invoices, payments
            return {
                "customer": row(obj),
                "subscriptions": _all(s, Subscription, Subscription.customer_id == obj.id),
                "invoices": _all(s, Invoice, Invoice.customer_id == obj.id),
                "payments": _all(s, Payment, Payment.customer_id == obj.id),
            }
        if kind == "purchase":  # a one-time checkout purchase: its invoice(s) and payments
            return {
                "purchase": row(obj),
                "invoices": _all(s, Invoice, Invoice.purchase_id == obj.id),
                "payments": _all(s, Payment, Payment.purchase_id == obj.id),
            }
        if kind == "invoice":
            return {
                "invoice": row(obj),
                "money": invoice_totals(s, obj).as_dict(),
                "lineItems": _all(s, InvoiceLineItem, InvoiceLineItem.invoice_id == obj.id),
                "payments": _all(s, Payment, Payment.invoice_id == obj.id),
            }
        invoices = _all(s, Invoice, Invoice.billing_period_id == obj.billing_period_id)
        payment = s.exec(
            select(Payment)
            .where(Payment.billing_run_id == obj.id)
            .order_by(col(Payment.created_at).desc(), col(Payment.id))
        ).first()
        own = repo.invoice_of_run(s, obj.id)  # an adjustment run's proration invoice
        invoice_id = (
            payment.invoice_id
            if payment
            else own.id
            if own
            else (invoices[0]["id"] if invoices else None)
        )
        money = invoice_totals(s, invoice_id).as_dict() if invoice_id else None
        return {
            "billingRun": row(obj),
            "money": money,
            "payments": _all(s, Payment, Payment.billing_run_id == obj.id),
            "invoices": invoices,
        }


MONEY_FIELDS = frozenset(
    {
        "amount",
        "subtotal",
        "tax_amount",
        "application_fee",
        "refunded_amount",
        "price",
        "unit_price",
        "first_invoice_value",
        "total_purchase_value",
        "price_per_billing_cycle",
    }
)
FIRST, LAST = ("id", "status"), ("created_at", "updated_at")


def display(r: dict, currency: str | None = None) -> list[tuple[str, str]]:
    """(field, text) pairs of a row in a stable order, money formatted in the row's currency
    (or `currency`, for rows without one: invoice lines), empty fields left out."""
    currency = r.get("currency") or currency
    keys = (
        [k for k in FIRST if k in r]
        + [k for k in r if k not in FIRST + LAST]
        + [k for k in LAST if k in r]
    )
    shown = []
    for k in keys:
        v = r[k]
        if v in (None, "", {}, []):
            continue
        if k in MONEY_FIELDS and isinstance(v, int) and currency:
            v = format_money(v, currency)
        shown.append((k, str(v)))
    return shown


# -- billing list ------------------------------------------------------------------------
# The models share the columns list_rows reads: status, created_at, id, customer_id (a billing
# run's customer is its subscription's).
LISTS: dict[str, tuple[type[Any], type[StrEnum]]] = {
    "subscriptions": (Subscription, E.SubscriptionStatus),
    "invoices": (Invoice, E.InvoiceStatus),
    "billing-runs": (BillingRun, E.BillingRunStatus),
    "payments": (Payment, E.PaymentStatus),
}
COLUMNS = {
    "subscriptions": (
        "id",
        "status",
        "customer_id",
        "name",
        "current_billing_period_end",
        "cancel_scheduled_at",
        "created_at",
    ),
    "invoices": (
        "id",
        "status",
        "invoice_number",
        "customer_id",
        "total",
        "due",
        "currency",
        "invoice_date",
    ),
    "billing-runs": (
        "id",
        "status",
        "subscription_id",
        "attempt_number",
        "scheduled_for",
        "completed_at",
    ),
    "payments": ("id", "status", "amount", "currency", "customer_id", "invoice_id", "charge_date"),
}


# The catalogue: what the other commands take ids of (`billing adjust --price`, and
# `--customer` / `--organization` of `billing list`). No status; filtered by organisation only.
CATALOGUE: dict[str, type[Any]] = {
    "prices": Price,
    "customers": Customer,
    "organizations": Organization,
}
COLUMNS.update(
    {
        "prices": (
            "id",
            "name",
            "unit_price",
            "currency",
            "type",
            "interval_unit",
            "active",
            "organization_id",
        ),
        "customers": ("id", "name", "email", "organization_id", "stripe_customer_id", "created_at"),
        "organizations": ("id", "name", "default_currency", "created_at"),
    }
)
KIND_NAMES = (*LISTS, *CATALOGUE)


def catalogue_rows(b, kind: str, organization: str | None = None, limit: int = 100) -> list[dict]:
    """The newest `limit` prices, customers or organisations (of one organisation); a price
    row adds its product's organisation (`organization_id`)."""
    model = CATALOGUE[kind]
    query: Any = select(model)
    if model is Price:
        query = select(Price, Product.organization_id).join(
            Product, col(Price.product_id) == Product.id, isouter=True
        )
        if organization is not None:
            query = query.where(Product.organization_id == organization)
    elif organization is not None:
        owner = Organization.id if model is Organization else Customer.organization_id
        query = query.where(owner == organization)
    with b.unit() as s:
        found = s.exec(query.order_by(model.created_at.desc(), model.id.desc()).limit(limit))
        if model is not Price:
            return [row(r) for r in found]
        return [{**row(price), "organization_id": org} for price, org in found]


def list_rows(
    b,
    kind: str,
    status: str | None = None,
    customer: str | None = None,
    limit: int = 100,
    organization: str | None = None,
) -> list[dict]:
    """The newest `limit` rows of `kind`, optionally of one status, one customer and one
    organisation. An invoice row adds its `total` and `due` (flowjobs.billing.totals); money
    stays in minor units."""
    if kind in CATALOGUE:
        if status is not None or customer is not None:
            given = "--status" if status is not None else "--customer"
            raise BadInput(f"{given} does not apply to {kind} (only --organization does)")
        return catalogue_rows(b, kind, organization, limit)
    if kind not in LISTS:
        raise BadInput(f"unknown kind {kind!r}; use one of: {', '.join(KIND_NAMES)}")
    model, statuses = LISTS[kind]
    valid = [v.value for v in statuses]
    if status is not None and status not in valid:
        raise BadInput(
            f"--status {status!r} is not a status of {kind}; use one of: {', '.join(valid)}"
        )
    query = select(model)
    if status is not None:
        query = query.where(model.status == status)
    if (customer or organization) and model is BillingRun:  # a run's are its subscription's
        query = query.join(Subscription, col(BillingRun.subscription_id) == Subscription.id)
    owner = Subscription if model is BillingRun else model
    if customer is not None:
        query = query.where(owner.customer_id == customer)
    if organization is not None:
        query = query.where(owner.organization_id == organization)
    with b.unit() as s:
        found = list(s.exec(query.order_by(model.created_at.desc(), model.id.desc()).limit(limit)))
        rows = [row(r) for r in found]
        if model is Invoice:
            for r, invoice in zip(rows, found):
                money = invoice_totals(s, invoice)
                r["total"], r["due"] = money.total, money.due
        return rows


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
            return dict(
                Counter(
                    {
                        k: v
                        for k, v in s.exec(
                            select(model.status, func.count()).group_by(model.status)
                        )
                    }
                )
            )

        runs = by_status(BillingRun)
        retries = s.exec(
            select(func.count()).where(
                BillingRun.status == E.BillingRunStatus.SCHEDULED, BillingRun.attempt_number > 1
            )
        ).one()
        collected = s.exec(  # net of refunds made at Stripe (billing/refunds.py)
            select(
                Payment.currency,
                func.sum(Payment.amount - func.coalesce(Payment.refunded_amount, 0)),
            )
            .where(col(Payment.status).in_(list(E.PAYMENT_SETTLED)))
            .group_by(Payment.currency)
        ).all()
        return {
            "billingRuns": runs,
            "retriesScheduled": int(retries),
            "payments": by_status(Payment),
            "collected": {currency: int(total) for currency, total in collected},
            "invoices": by_status(Invoice),
            "subscriptions": by_status(Subscription),
        }
