"""`attempt-cancel-scheduled-subscriptions {startDateISO, endDateISO}`: trigger one
`attempt-subscription-cancellation` per subscription whose scheduled cancellation falls in
the window (inclusive), a page at a time, keyed by subscription."""

from datetime import datetime

from pydantic import Field, model_validator

from flowjobs.core.registry import task
from flowjobs.tasks._billing import Payload, fan_out, utc


class CancelWindow(Payload):
    start: datetime = Field(alias="startDateISO")
    end: datetime = Field(alias="endDateISO")

    @model_validator(mode="after")
    def _ordered(self):
        if self.start > self.end:  # an empty window, silently
            raise ValueError("startDateISO must not be after endDateISO")
        return self


@task("attempt-cancel-scheduled-subscriptions", payload=CancelWindow)
def attempt_cancel_scheduled_subscriptions(payload: CancelWindow, ctx):
    """Fan out the cancellations that fell due in the window."""
    from flowjobs.billing.fanout import cancellations_due

    b = ctx.billing
    pages = cancellations_due(b, utc(payload.start), utc(payload.end), b.settings.fan_out_page)
    total = len(
        fan_out(
            ctx, pages, "attempt-subscription-cancellation", "subscriptionId", lambda row: row[0]
        )
    )
    ctx.log.info("triggered %d cancellations", total)
    return {"subscriptions": total}
