"""`flowjobs demo seed`: demo billing data whose first billing runs are due."""

from __future__ import annotations

import typer

from flowjobs.cli import output

app = typer.Typer(help="Demo data for trying flowjobs' billing jobs.", no_args_is_help=True)


@app.command("seed")
def seed(
    ctx: typer.Context,
    customers: int = typer.Option(
        10, "--customers", metavar="N", min=1, max=100000, help="Customers to create."
    ),
    declining: int | None = typer.Option(
        None,
        "--declining",
        metavar="N",
        min=0,
        help="How many of them renew on a card that declines (default: a quarter).",
    ),
    purchases: int | None = typer.Option(
        None,
        "--purchases",
        metavar="N",
        min=0,
        help="How many customers also buy something once at checkout, paid at Stripe; flowjobs "
        "records it from the payment_intent.succeeded event (default: up to 3, card-paying ones).",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object: organizationId, customers, declining, subscriptions, "
        "billingRuns, checkoutSessions, paymentIntents.",
    ),
):
    """Create an organisation, plans, customers with Stripe customers and cards, and subscriptions."""
    from flowjobs.billing.demo import seed as run
    from flowjobs.errors import BadInput

    if declining is None:
        declining = customers // 4
    if declining > customers:
        raise BadInput("--declining cannot be more than --customers")
    if purchases is None:
        purchases = min(3, customers - declining)
    if purchases > customers - declining:
        raise BadInput("--purchases cannot be more than the customers with a working card")
    rt = ctx.obj.runtime()
    billing = rt.billing
    billing.gateway.client(False)  # a missing Stripe key fails here, before anything is written
    with output.progress(customers, "creating Stripe customers") as advance:
        result = run(billing, customers, declining, progress=advance, purchases=purchases)
    if as_json:
        output.emit_json(
            {
                "organizationId": result.organization_id,
                "customers": result.customers,
                "declining": result.declining,
                "subscriptions": result.subscriptions,
                "billingRuns": result.billing_runs,
                "checkoutSessions": result.checkout_sessions,
                "paymentIntents": result.payment_intents,
            }
        )
        return
    typer.echo(
        f"organization {result.organization_id}: {result.customers} customers; "
        f"{result.customers - result.declining} first billing runs due now, {result.declining} "
        f"renewals (declining card) due when the hourly cron rolls their period over; "
        f"{len(result.checkout_sessions)} one-time purchases paid at Stripe, waiting for their "
        "payment_intent.succeeded events"
        + (
            " (with no webhook endpoint, `flowjobs events fetch` brings them in)"
            if result.checkout_sessions
            else ""
        )
    )
