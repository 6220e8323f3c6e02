"""`flowjobs billing show subscription|invoice|billing-run ID` and `flowjobs billing summary`."""

from __future__ import annotations

import typer

from flowjobs.cli import output

app = typer.Typer(help="The state the billing jobs produced.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context,
         kind: str = typer.Argument(..., help="subscription, invoice or billing-run."),
         object_id: str = typer.Argument(..., metavar="ID"),
         as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """Show a subscription (periods, runs, invoices, payments), an invoice (lines, payments) or a billing run."""
    from flowjobs.billing.views import show as load

    data = load(ctx.obj.runtime().billing, kind, object_id)
    if as_json:
        output.emit_json(data)
        return
    for section, value in data.items():
        if section == "money":
            _money(value)
            continue
        rows = value if isinstance(value, list) else [value]
        typer.echo(f"== {section} ({len(rows)}) ==" if isinstance(value, list) else f"== {section} ==")
        for r in rows:
            typer.echo("  " + "  ".join(f"{k}={v}" for k, v in r.items() if v not in (None, "", {}, [])))


def _money(money: dict | None) -> None:
    """The invoice's money as money: its lines, then each total (zero discount/tax/paid left out)."""
    from flowjobs.billing.money import format_money

    typer.echo("== money ==")
    if not money:
        typer.echo("  (no invoice)")
        return
    fmt = lambda v: format_money(v, money["currency"])  # noqa: E731
    for line in money["lines"]:
        period = f"  {line['periodStart'][:10]} – {line['periodEnd'][:10]}" if line["periodStart"] else ""
        typer.echo(f"  {line['description']}  {line['quantity']} x {fmt(line['unitPrice'])} = {fmt(line['amount'])}"
                   + period)
    labels = [("base", "amount"), ("discount", "discount"), ("subtotal", "subtotal"), ("tax", "tax"),
              ("total", "total"), ("paid", "paid"), ("refunded", "refunded"), ("due", "due")]
    shown = [(label, money[key]) for key, label in labels
             if key in ("subtotal", "total", "due") or money[key]]
    if money["discount"] and money.get("discountCode"):
        shown = [(f"discount ({money['discountCode']})" if k == "discount" else k, v) for k, v in shown]
    typer.echo("  " + "  ".join(f"{label}={fmt(-v if label.startswith('discount') or label == 'refunded' else v)}"
                                for label, v in shown))


@app.command("summary")
def summary(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """Billing runs, payments, invoices and subscriptions by status; money collected."""
    from flowjobs.billing.money import format_money
    from flowjobs.billing.views import summary as load

    data = load(ctx.obj.runtime().billing)
    if as_json:
        output.emit_json(data)
        return
    runs = data["billingRuns"]
    typer.echo(f"charged: {runs.get('succeeded', 0)} billing runs succeeded, {runs.get('failed', 0)} failed, "
               f"{data['retriesScheduled']} retries scheduled")
    for title in ("billingRuns", "payments", "invoices", "subscriptions"):
        counts = ", ".join(f"{k} {v}" for k, v in sorted(data[title].items())) or "none"
        typer.echo(f"{title}: {counts}")
    collected = ", ".join(format_money(v, k) for k, v in sorted(data["collected"].items())) or "nothing"
    typer.echo(f"collected: {collected}")
