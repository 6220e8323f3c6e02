"""`attempt-transition-billing-periods {lastTimestamp, currentTimestamp}`: trigger one
`attempt-billing-period-transition` per billing period that ended in the window (inclusive,
whatever its status: see `fanout.ending_periods`), a page at a time, keyed by period."""

from datetime import datetime

from pydantic import Field, model_validator

from flowjobs.core.registry import task
from flowjobs.tasks._billing import Payload, fan_out, utc


class TransitionWindow(Payload):
    last_timestamp: datetime = Field(alias="lastTimestamp")
    current_timestamp: datetime = Field(alias="currentTimestamp")

    @model_validator(mode="after")
    def _ordered(self):
        if self.last_timestamp > self.current_timestamp:  # an empty window, silently
            raise ValueError("lastTimestamp must not be after currentTimestamp")
        return self


@task("attempt-transition-billing-periods", payload=TransitionWindow)
def attempt_transition_billing_periods(payload: TransitionWindow, ctx):
    """Fan out the billing periods that ended in the window."""
    from flowjobs.billing.fanout import ending_periods

    b = ctx.billing
    pages = ending_periods(
        b, utc(payload.last_timestamp), utc(payload.current_timestamp), b.settings.fan_out_page
    )
    total = len(fan_out(ctx, pages, "attempt-billing-period-transition", "billingPeriodId"))
    ctx.log.info("triggered %d period transitions", total)
    return {"periods": total}
