"""`flowjobs endpoints add|list|enable|disable|rotate-secret|test ORG_ID …`: merchants' webhook
endpoints for outbound event delivery (docs/webhooks.md, "Outbound webhooks")."""

from __future__ import annotations

import typer

from flowjobs.cli import output
from flowjobs.errors import ExitStatus

app = typer.Typer(
    help="Merchants' webhook endpoints: where flowjobs delivers an organisation's events.",
    no_args_is_help=True,
)


def _mode(live: bool) -> str:
    return "live" if live else "test"


@app.command("add")
def add(
    ctx: typer.Context,
    organization_id: str = typer.Argument(..., metavar="ORG_ID"),
    url: str = typer.Option(
        ..., "--url", metavar="URL", help="The endpoint's URL (http:// or https://)."
    ),
    live: bool = typer.Option(
        False, "--live", help="Receive live-mode events (default: test mode)."
    ),
    event_type: list[str] | None = typer.Option(
        None,
        "--event-type",
        metavar="TYPE",
        help="Only this type (repeatable); default every type.",
    ),
    description: str | None = typer.Option(
        None,
        "--description",
        metavar="TEXT",
        help="A note for people, kept with the endpoint.",
    ),
    secret: str | None = typer.Option(
        None, "--secret", metavar="SECRET", help="whsec_<base64> (default: a new random one)."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object: the endpoint {id, organizationId, url, livemode, eventTypes, enabled, secret, …}.",
    ),
):
    """Add an endpoint to ORG_ID; prints its id and signing secret (shown in full only here)."""
    from flowjobs.outbound.endpoints import add as add_endpoint
    from flowjobs.outbound.endpoints import as_dict

    endpoint = add_endpoint(
        ctx.obj.runtime(existing=True).billing,
        organization_id,
        url,
        livemode=live,
        event_types=event_type,
        description=description,
        secret=secret,
    )
    data = as_dict(endpoint, show_secret=True)
    if as_json:
        output.emit_json(data)
        return
    typer.echo(f"{endpoint.id}\t{_mode(live)}\t{url}")
    typer.echo(f"secret: {endpoint.secret}")


@app.command("list")
def list_endpoints(
    ctx: typer.Context,
    organization_id: str = typer.Argument(..., metavar="ORG_ID"),
    mode: str | None = typer.Option(
        None, "--mode", metavar="MODE", help="live or test (default: both)."
    ),
    show_secret: bool = typer.Option(False, "--show-secret", help="Print secrets in full."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON array of endpoints {id, organizationId, url, livemode, eventTypes, enabled, …}.",
    ),
):
    """ORG_ID's endpoints (secrets masked unless --show-secret)."""
    from flowjobs.errors import BadInput
    from flowjobs.outbound.endpoints import as_dict, listing

    if mode not in (None, "live", "test"):
        raise BadInput("--mode must be live or test")
    rows = listing(
        ctx.obj.runtime(read_only=True).billing,
        organization_id,
        None if mode is None else mode == "live",
    )
    data = [as_dict(e, show_secret) for e in rows]
    if as_json:
        output.emit_json(data)
        return
    output.table(
        ["id", "mode", "url", "event_types", "enabled", "secret"],
        [
            [
                d["id"],
                _mode(d["livemode"]),
                d["url"],
                ",".join(d["eventTypes"]) or "*",
                "yes" if d["enabled"] else "no",
                d["secret"],
            ]
            for d in data
        ],
    )


def _toggle(ctx, organization_id: str, endpoint_id: str, enabled: bool) -> None:
    from flowjobs.outbound.endpoints import set_enabled

    endpoint = set_enabled(
        ctx.obj.runtime(existing=True).billing, organization_id, endpoint_id, enabled
    )
    typer.echo(f"{endpoint.id} {'enabled' if enabled else 'disabled'}")


@app.command("disable")
def disable(
    ctx: typer.Context,
    organization_id: str = typer.Argument(..., metavar="ORG_ID"),
    endpoint_id: str = typer.Argument(..., metavar="ENDPOINT_ID"),
):
    """Stop delivering to an endpoint (pending deliveries to it end `skipped`)."""
    _toggle(ctx, organization_id, endpoint_id, False)


@app.command("enable")
def enable(
    ctx: typer.Context,
    organization_id: str = typer.Argument(..., metavar="ORG_ID"),
    endpoint_id: str = typer.Argument(..., metavar="ENDPOINT_ID"),
):
    """Deliver to a disabled endpoint again (new events; `events redeliver` for old ones)."""
    _toggle(ctx, organization_id, endpoint_id, True)


@app.command("rotate-secret")
def rotate_secret(
    ctx: typer.Context,
    organization_id: str = typer.Argument(..., metavar="ORG_ID"),
    endpoint_id: str = typer.Argument(..., metavar="ENDPOINT_ID"),
    secret: str | None = typer.Option(
        None, "--secret", metavar="SECRET", help="whsec_<base64> (default: a new random one)."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object: the endpoint {id, url, …} with its new secret.",
    ),
):
    """Replace the endpoint's signing secret now; the old one stops verifying. Prints the new one."""
    from flowjobs.outbound.endpoints import as_dict
    from flowjobs.outbound.endpoints import rotate_secret as rotate

    endpoint = rotate(ctx.obj.runtime(existing=True).billing, organization_id, endpoint_id, secret)
    if as_json:
        output.emit_json(as_dict(endpoint, show_secret=True))
        return
    typer.echo(f"secret: {endpoint.secret}")


@app.command("test")
def test(
    ctx: typer.Context,
    organization_id: str = typer.Argument(..., metavar="ORG_ID"),
    endpoint_id: str | None = typer.Argument(None, metavar="[ENDPOINT_ID]"),
    mode: str | None = typer.Option(
        None, "--mode", metavar="MODE", help="live or test (default: both)."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON array: {endpointId, url, status, latencyMs, error} per endpoint.",
    ),
):
    """Send a signed `webhook.test` message now to one endpoint, or to every enabled endpoint of
    ORG_ID; exit 1 if any did not answer 2xx. Nothing is recorded."""
    from flowjobs.errors import BadInput
    from flowjobs.outbound.endpoints import send_test

    if mode not in (None, "live", "test"):
        raise BadInput("--mode must be live or test")
    rt = ctx.obj.runtime(read_only=True)  # records nothing
    results = send_test(
        rt.billing,
        rt.settings.webhooks.outbound,
        organization_id,
        endpoint_id,
        None if mode is None else mode == "live",
    )
    if as_json:
        output.emit_json(results)
    else:
        output.table(
            ["endpoint", "url", "status", "latency_ms", "error"],
            [[r["endpointId"], r["url"], r["status"], r["latencyMs"], r["error"]] for r in results],
        )
    if not all(r["ok"] for r in results):
        raise typer.Exit(int(ExitStatus.FAILURE))
