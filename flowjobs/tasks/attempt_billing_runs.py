"""`attempt-billing-runs {timestamp}`: trigger `attempt-billing-run` for every `scheduled`
billing run due by now, a page at a time, each keyed `attempt-billing-run:<id>` — the same
key the rollover, the retry ladder and `flowjobs trigger billing-run` use, so however many
paths reach one billing run, it gets one execution."""

from datetime import datetime

from flowjobs.core.registry import task
from flowjobs.tasks._billing import Payload


class AttemptBillingRunsPayload(Payload):
    timestamp: datetime


@task("attempt-billing-runs", payload=AttemptBillingRunsPayload)
def attempt_billing_runs(payload: AttemptBillingRunsPayload, ctx):
    """Fan out the billing runs that are due."""
    from flowjobs.billing.fanout import due_billing_runs
    from flowjobs.core.client import TriggerItem

    b = ctx.runtime.billing
    count = {"livemode": 0, "testmode": 0}
    for page in due_billing_runs(b, b.now(), b.settings.fan_out_page):
        ctx.batch_trigger([TriggerItem("attempt-billing-run", {"billingRunId": run_id},
                                       idempotency_key=f"attempt-billing-run:{run_id}")
                           for run_id, _ in page])
        for _, livemode in page:
            count["livemode" if livemode else "testmode"] += 1
    ctx.log.info("triggered %d live and %d test billing runs", count["livemode"], count["testmode"])
    return count
