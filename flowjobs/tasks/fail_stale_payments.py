"""`fail-stale-payments {timestamp}`: settle or fail payments pending for more than
`[billing] stale_payment_after` (6 h), asking Stripe first; give up on those still pending
past `[billing] pending_give_up_after` / `processing_give_up_after` (flowjobs.billing.stale)."""

from datetime import datetime

from flowjobs.core.registry import task
from flowjobs.tasks._billing import Payload, utc


class StalePayload(Payload):
    timestamp: datetime


@task("fail-stale-payments", payload=StalePayload)
def fail_stale_payments(payload: StalePayload, ctx):
    """Settle or fail payments stuck in a pending status."""
    from flowjobs.billing.stale import fail_stale_payments as run

    alerts = ctx.settings.alerts
    report = run(
        ctx.billing, utc(payload.timestamp), alert=bool(alerts.email or alerts.webhook_url)
    )
    ctx.log.info(
        "stale payments: %d seen, %d failed, %d settled, %d still pending, %d requeued, %d errors",
        report.total,
        len(report.failed),
        len(report.settled),
        len(report.still_processing),
        len(report.requeued),
        len(report.errors),
    )
    return report.as_dict()
