"""`flowjobs billing adjust SUBSCRIPTION_ID --price PRICE_ID …`: change a subscription's plan with
proration (flowjobs.billing.adjust; docs/billing.md "Plan changes").

Exit codes: 0 done (or nothing to do), 2 refused (bad option, or the subscription's state
says why), 3 unknown subscription or price.
"""

from __future__ import annotations

import typer

from flowjobs.cli import output


def adjust(
    ctx: typer.Context,
    subscription_id: str = typer.Argument(..., metavar="SUBSCRIPTION_ID"),
    price: str = typer.Option(..., "--price", metavar="PRICE_ID", help="The new plan's price."),
    quantity: int = typer.Option(
        1, "--quantity", metavar="N", min=1, help="Quantity of the new price."
    ),
    timing: str = typer.Option(
        "auto",
        "--timing",
        metavar="TIMING",
        help="immediately, at-period-end, or auto (increase now, decrease at period end).",
    ),
    no_prorate: bool = typer.Option(
        False, "--no-prorate", help="Swap the items now without a proration charge."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the proration arithmetic; change nothing."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object: {subscriptionId, action, timing, adjustmentType, effectiveAt, "
        "proration, previousItems, newItems, billingRunId, detail}.",
    ),
):
    """Change a subscription's plan; a positive prorated difference is charged before the items change."""
    from flowjobs.billing.adjust import adjust_subscription

    report = adjust_subscription(
        ctx.obj.runtime(existing=True).billing,
        subscription_id,
        price_id=price,
        quantity=quantity,
        timing=timing,
        prorate_charge=not no_prorate,
        dry_run=dry_run,
    )
    if as_json:
        output.emit_json(report.as_dict())
        return
    if report.action not in ("unchanged", "unscheduled"):  # no change: no kind, no arithmetic
        typer.echo(
            f"subscription {report.subscription_id}: {report.adjustment_type}, "
            f"timing {report.timing}"
        )
        for line in report.proration.lines():
            typer.echo("  " + line)
        if no_prorate and report.proration.net:
            typer.echo("  (--no-prorate: nothing is charged)")
    typer.echo(f"{report.action}: {report.detail}")


def register(billing_app: typer.Typer) -> None:
    billing_app.command("adjust")(adjust)
