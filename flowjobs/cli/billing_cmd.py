"""`flowjobs billing show|list|cancel|uncancel|retry|summary`: the state the billing jobs
produced, and the operator's commands (the work is in flowjobs.billing.views / .cancel / .retry)."""

from __future__ import annotations

import typer

from flowjobs.cli import output

app = typer.Typer(help="The state the billing jobs produced.", no_args_is_help=True)


@app.command("show")
def show(
    ctx: typer.Context,
    kind: str = typer.Argument(
        ..., help="subscription, invoice, billing-run, purchase or customer."
    ),
    object_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object {<kind>: the object, <section>: [related rows], money: totals} (money in minor units).",
    ),
):
    """Show a subscription (periods, runs, invoices, payments, items), an invoice (lines, payments), a billing run, a purchase (invoices, payments) or a customer (subscriptions, invoices, payments)."""
    from flowjobs.billing.views import KIND_NAMES, KINDS
    from flowjobs.billing.views import show as load
    from flowjobs.cli.filters import one_of

    def listed(folded: str) -> str | None:  # `show price`, `show payments`: listed, not shown
        plural = next((k for k in KIND_NAMES if folded in (k, k.removesuffix("s"))), None)
        if plural is None or plural.removesuffix("s") in KINDS:
            return None
        return f"{plural} are listed, every column, by `flowjobs billing list {plural}`"

    one_of(kind, KINDS, "kind", listed)  # before any database: `sub` gets "did you mean"
    data = load(ctx.obj.runtime(read_only=True).billing, kind, object_id)
    if as_json:
        output.emit_json(data)
        return
    from flowjobs.billing.views import display

    main = next(iter(data.values()))
    currency = (data.get("money") or {}).get("currency") or main.get("currency")
    for section, value in data.items():
        if section == "money":
            _money(value)
            continue
        if not isinstance(value, list):
            typer.echo(f"== {section} ==")
            for k, v in display(value, currency):
                typer.echo(f"  {k}: {v}")
            continue
        typer.echo(f"== {section} ({len(value)}) ==")
        for r in value:
            typer.echo("  " + "  ".join(f"{k}={v}" for k, v in display(r, currency)))


def _money(money: dict | None) -> None:
    """The invoice's money as money: its lines, then each total (zero discount/tax/paid left out)."""
    from flowjobs.billing.money import format_money

    typer.echo("== money ==")
    if not money:
        typer.echo("  (no invoice)")
        return
    fmt = lambda v: format_money(v, money["currency"])  # noqa: E731
    for line in money["lines"]:
        period = (
            f"  {line['periodStart'][:10]} – {line['periodEnd'][:10]}"
            if line["periodStart"]
            else ""
        )
        typer.echo(
            f"  {line['description']}  {line['quantity']} x {fmt(line['unitPrice'])} = {fmt(line['amount'])}"
            + period
        )
    labels = [
        ("base", "amount"),
        ("discount", "discount"),
        ("subtotal", "subtotal"),
        ("tax", "tax"),
        ("total", "total"),
        ("paid", "paid"),
        ("refunded", "refunded"),
        ("due", "due"),
    ]
    shown = [
        (label, money[key])
        for key, label in labels
        if key in ("subtotal", "total", "due") or money[key]
    ]
    if money["discount"] and money.get("discountCode"):
        shown = [
            (f"discount ({money['discountCode']})" if k == "discount" else k, v) for k, v in shown
        ]
    typer.echo(
        "  "
        + "  ".join(
            f"{label}={fmt(-v if label.startswith('discount') or label == 'refunded' else v)}"
            for label, v in shown
        )
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    kind: str = typer.Argument(
        ...,
        help="subscriptions, invoices, billing-runs, payments; or the catalogue: prices, "
        "customers, organizations (the ids `billing adjust --price` and `--customer` / "
        "`--organization` here take).",
    ),
    status: str | None = typer.Option(
        None, "--status", metavar="STATUS", help="Only this status (the spec's values)."
    ),
    customer: str | None = typer.Option(
        None, "--customer", metavar="CUSTOMER_ID", help="Only this customer's (cust_…)."
    ),
    organization: str | None = typer.Option(
        None, "--organization", metavar="ORG_ID", help="Only this organisation's (org_…)."
    ),
    limit: int = typer.Option(
        100, "--limit", metavar="N", min=1, help="At most this many, newest first."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON array of objects {id, status, …every column of the row, currency} (money in minor units).",
    ),
):
    """List billing objects, newest first, to find their ids."""
    from flowjobs.billing.money import format_money
    from flowjobs.billing.views import COLUMNS, KIND_NAMES, LISTS, MONEY_FIELDS, list_rows
    from flowjobs.cli.filters import one_of

    one_of(kind, KIND_NAMES, "kind")
    if kind in LISTS:
        one_of(status, [v.value for v in LISTS[kind][1]], f"--status of {kind}")
    rows = list_rows(
        ctx.obj.runtime(read_only=True).billing, kind, status, customer, limit, organization
    )
    if as_json:
        output.emit_json(rows)
        return
    columns = COLUMNS[kind]
    money = MONEY_FIELDS | {"total", "due"}
    output.table(
        list(columns),
        [
            [
                format_money(r[c], r["currency"])
                if c in money and r.get(c) is not None
                else r.get(c)
                for c in columns
            ]
            for r in rows
        ],
    )


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    subscription_id: str = typer.Argument(..., metavar="SUBSCRIPTION_ID"),
    at_period_end: bool = typer.Option(
        False, "--at-period-end", help="Cancel when the current period ends (the default)."
    ),
    now: bool = typer.Option(
        False, "--now", help="Cancel now: periods closed, scheduled runs aborted."
    ),
    reason: str | None = typer.Option(
        None,
        "--reason",
        metavar="TEXT",
        help="customer_request (default), non_payment, other, … or free text.",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object: {id, status, canceledAt, cancelScheduledAt, cancellationReason, customerId, movedToSubscriptionId}.",
    ),
):
    """Cancel a subscription at the end of its period or now; the customer and the organisation are emailed."""
    from flowjobs.billing.cancel import cancel as run
    from flowjobs.errors import BadInput

    if at_period_end and now:
        raise BadInput("give --at-period-end or --now, not both")
    done = run(ctx.obj.runtime(existing=True).billing, subscription_id, now=now, reason=reason)
    if as_json:
        output.emit_json(done)
        return
    if done["status"] == "canceled":
        typer.echo(
            f"subscription {done['id']} canceled at {done['canceledAt']} ({done['cancellationReason']}); "
            "subscription-canceled emails queued for the customer and the organisation"
        )
    else:
        typer.echo(
            f"subscription {done['id']} will be canceled at {done['cancelScheduledAt']} "
            f"({done['cancellationReason']}); cancellation-scheduled emails queued for the customer "
            "and the organisation"
        )
    if done["movedToSubscriptionId"]:
        typer.echo(
            f"customer {done['customerId']} moved to the default free plan: subscription "
            f"{done['movedToSubscriptionId']}"
        )


@app.command("uncancel")
def uncancel(
    ctx: typer.Context,
    subscription_id: str = typer.Argument(..., metavar="SUBSCRIPTION_ID"),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object: {id, status, billingRuns}."
    ),
):
    """Revert a scheduled cancellation: the subscription renews again."""
    from flowjobs.billing.cancel import uncancel_subscription

    done = uncancel_subscription(ctx.obj.runtime(existing=True).billing, subscription_id)
    if as_json:
        output.emit_json(done)
        return
    runs = (
        f"; billing runs scheduled again: {', '.join(done['billingRuns'])}"
        if done["billingRuns"]
        else ""
    )
    typer.echo(
        f"subscription {done['id']} is {done['status']} again; its cancellation is withdrawn{runs}"
    )


@app.command("retry")
def retry(
    ctx: typer.Context,
    billing_run_id: str = typer.Argument(..., metavar="BILLING_RUN_ID"),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object: {failed, billingRunId, created, runId, status, detail}.",
    ),
):
    """Bill a failed billing run's period again, now, with the subscription's current payment method.

    Its period's scheduled retry is charged now, or (no retry left) a new billing run is made.
    Refused (exit 2) unless the billing run is failed and its period is neither paid nor being
    charged. Prints the billing run that bills the period now; what it did goes to stderr.
    """
    from flowjobs.billing.retry import retry_billing_run

    done = retry_billing_run(ctx.obj.runtime(existing=True).billing, billing_run_id)
    if as_json:
        output.emit_json(done.as_dict())
        return
    typer.echo(done.billing_run)
    typer.echo(done.detail, err=True)


@app.command("summary")
def summary(
    ctx: typer.Context,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object: {billingRuns, payments, invoices, subscriptions: counts by status; retriesScheduled; collected: minor units by currency}.",
    ),
):
    """Billing runs, payments, invoices and subscriptions by status; money collected."""
    from flowjobs.billing.money import format_money
    from flowjobs.billing.views import summary as load

    data = load(ctx.obj.runtime(read_only=True).billing)
    if as_json:
        output.emit_json(data)
        return
    runs = data["billingRuns"]
    typer.echo(
        f"charged: {runs.get('succeeded', 0)} billing runs succeeded, {runs.get('failed', 0)} failed, "
        f"{data['retriesScheduled']} retries scheduled"
    )
    for title in ("billingRuns", "payments", "invoices", "subscriptions"):
        counts = ", ".join(f"{k} {v}" for k, v in sorted(data[title].items())) or "none"
        typer.echo(f"{title}: {counts}")
    collected = (
        ", ".join(format_money(v, k) for k, v in sorted(data["collected"].items())) or "nothing"
    )
    typer.echo(f"collected: {collected}")
