"""`attempt-billing-runs {timestamp}`: trigger `attempt-billing-run` for every `scheduled`
billing run due by now, a page at a time, each keyed `attempt-billing-run:<id>` — the same
key the rollover, the retry ladder and `flowjobs trigger billing-run` use, so however many
paths reach one billing run, it gets one execution."""

from datetime import datetime

from flowjobs.core.registry import task
from flowjobs.tasks._billing import Payload, fan_out


class AttemptBillingRunsPayload(Payload):
    timestamp: datetime


@task("attempt-billing-runs", payload=AttemptBillingRunsPayload)
def attempt_billing_runs(payload: AttemptBillingRunsPayload, ctx):
    """Fan out the billing runs that are due."""
    from flowjobs.billing.fanout import due_billing_runs

    b = ctx.billing
    pages = due_billing_runs(b, b.now(), b.settings.fan_out_page)
    rows = fan_out(ctx, pages, "attempt-billing-run", "billingRunId", lambda row: row[0])
    count = {
        "livemode": sum(1 for _, live in rows if live),
        "testmode": sum(1 for _, live in rows if not live),
    }
    ctx.log.info("triggered %d live and %d test billing runs", count["livemode"], count["testmode"])
    return count
