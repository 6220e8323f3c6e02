"""`fail-stale-payments {timestamp}`: settle or fail payments pending for more than
`[billing] stale_payment_after` (6 h), asking Stripe first (flowjobs.billing.stale)."""

from datetime import datetime

from flowjobs.core.registry import task
from flowjobs.tasks._billing import Payload, utc


class StalePayload(Payload):
    timestamp: datetime


@task("fail-stale-payments", payload=StalePayload)
def fail_stale_payments(payload: StalePayload, ctx):
    """Settle or fail payments stuck in a pending status."""
    from flowjobs.billing.stale import fail_stale_payments as run

    report = run(ctx.runtime.billing, utc(payload.timestamp))
    ctx.log.info("stale payments: %d seen, %d failed, %d settled, %d still processing, %d errors",
                 report.total, len(report.failed), len(report.settled), len(report.still_processing),
                 len(report.errors))
    return report.as_dict()
