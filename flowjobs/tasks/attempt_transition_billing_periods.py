"""`attempt-transition-billing-periods {lastTimestamp, currentTimestamp}`: trigger one
`attempt-billing-period-transition` per open billing period that ended in the window
(inclusive), a page at a time, keyed by period."""

from datetime import datetime

from pydantic import Field

from flowjobs.core.registry import task
from flowjobs.tasks._billing import Payload, utc


class TransitionWindow(Payload):
    last_timestamp: datetime = Field(alias="lastTimestamp")
    current_timestamp: datetime = Field(alias="currentTimestamp")


@task("attempt-transition-billing-periods", payload=TransitionWindow)
def attempt_transition_billing_periods(payload: TransitionWindow, ctx):
    """Fan out the billing periods that ended in the window."""
    from flowjobs.billing.fanout import ending_periods
    from flowjobs.core.client import TriggerItem

    b = ctx.runtime.billing
    total = 0
    for page in ending_periods(b, utc(payload.last_timestamp), utc(payload.current_timestamp),
                               b.settings.fan_out_page):
        ctx.batch_trigger([TriggerItem("attempt-billing-period-transition", {"billingPeriodId": pid},
                                       idempotency_key=f"attempt-billing-period-transition:{pid}")
                           for pid in page])
        total += len(page)
    ctx.log.info("triggered %d period transitions", total)
    return {"periods": total}
