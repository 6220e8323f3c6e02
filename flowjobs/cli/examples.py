"""One example line per command, shown at the end of its `--help`, and one for `flowjobs
--help` itself (ROOT). A test walks every command's help for one."""

from __future__ import annotations

ROOT = "flowjobs run-worker & flowjobs trigger hello-world --wait"

EXAMPLES = {
    "billing adjust": "flowjobs billing adjust sub_123 --price price_pro --timing immediately --dry-run",
    "billing cancel": "flowjobs billing cancel sub_123 --at-period-end --reason customer_request",
    "billing list": "flowjobs billing list invoices --status open --customer cust_123",
    "billing retry": "flowjobs billing retry billing_run_123",
    "billing show": "flowjobs billing show invoice inv_123",
    "billing summary": "flowjobs billing summary --json",
    "billing uncancel": "flowjobs billing uncancel sub_123",
    "db copy": "flowjobs db copy --to postgresql+psycopg://flowjobs@db.internal/flowjobs",
    "db status": "flowjobs --database sqlite:///demo/flowjobs.db db status --json",
    "db upgrade": "flowjobs --database sqlite:///demo/flowjobs.db db upgrade",
    "demo seed": "flowjobs demo seed --customers 10 --declining 2",
    "doctor": "flowjobs --database sqlite:///demo/flowjobs.db doctor",
    "documents render": "flowjobs documents render invoice inv_123 -o invoice.pdf",
    "endpoints add": "flowjobs endpoints add org_123 --url https://example.com/hooks --event-type payment.succeeded",
    "endpoints disable": "flowjobs endpoints disable org_123 endpoint_123",
    "endpoints enable": "flowjobs endpoints enable org_123 endpoint_123",
    "endpoints list": "flowjobs endpoints list org_123",
    "endpoints rotate-secret": "flowjobs endpoints rotate-secret org_123 endpoint_123",
    "endpoints test": "flowjobs endpoints test org_123",
    "events deliveries": "flowjobs events deliveries --status failed",
    "events export": "flowjobs events export whevt_123 -o event.json",
    "events fetch": "flowjobs events fetch --since 3d --dry-run",
    "events list": "flowjobs events list --source stripe --status rejected",
    "events redeliver": "flowjobs events redeliver event_123",
    "events replay": "flowjobs events replay whevt_123 --dry-run",
    "events show": "flowjobs events show whevt_123",
    "replay-event": "flowjobs replay-event examples/stripe-payment-intent-succeeded.json --dry-run",
    "run-scheduler": "flowjobs --config /etc/flowjobs/flowjobs.toml run-scheduler",
    "run-worker": "flowjobs run-worker --processes 4 --concurrency 10",
    "runs cancel": "flowjobs runs cancel run_123",
    "runs list": "flowjobs runs list --status failed --task hello-world",
    "runs replay": "flowjobs runs replay --status failed --task hello-world",
    "runs show": "flowjobs runs show run_123 --json",
    "runs watch": "flowjobs runs watch --interval 2",
    "schedules backfill": "flowjobs schedules backfill nightly-report --from 2026-11-01T00:00:00Z --to 2026-11-02T00:00:00Z",
    "schedules disable": "flowjobs schedules disable nightly-report",
    "schedules enable": "flowjobs schedules enable nightly-report",
    "schedules health": "flowjobs schedules health --json",
    "schedules list": "flowjobs schedules list",
    "schedules preview": "flowjobs schedules preview hourly-cron --from 2026-11-28T00:00:00Z",
    "schedules trigger": "flowjobs schedules trigger hourly-cron",
    "serve": "flowjobs serve --port 8080   # dashboard at /, Prometheus at /metrics",
    "tasks list": "flowjobs tasks list --json",
    "tick": "flowjobs tick --now 2026-11-28T18:00:00Z",
    "trigger": 'flowjobs trigger hello-world --payload \'{"name": "Ada"}\' --wait --timeout 30s',
    "workers": "flowjobs workers --since 1h",
}


# `flowjobs <group> --help` (a list of commands) ends with one too: the command most often
# wanted there.
GROUPS = {
    "billing": "flowjobs billing list subscriptions --status past_due",
    "db": "flowjobs db status",
    "demo": "flowjobs demo seed --customers 10 --declining 2",
    "documents": "flowjobs documents render invoice inv_123 -o invoice.pdf",
    "endpoints": "flowjobs endpoints list org_123",
    "events": "flowjobs events list --status rejected",
    "runs": "flowjobs runs list --status failed",
    "schedules": "flowjobs schedules list",
    "tasks": "flowjobs tasks list",
}


def add_examples(app, prefix: str = "") -> None:
    """Set each registered command's epilog to its example (typer builds `--help` from it),
    and each group's."""
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        path = f"{prefix}{name}"
        if path in EXAMPLES:
            info.epilog = info.epilog or f"Example: {EXAMPLES[path]}"
    for group in app.registered_groups:
        path = f"{prefix}{group.name}"
        if path in GROUPS:
            group.epilog = group.epilog or f"Example: {GROUPS[path]}"
        add_examples(group.typer_instance, f"{path} ")
