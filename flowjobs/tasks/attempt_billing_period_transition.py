"""`attempt-billing-period-transition {billingPeriodId}`: close the period and open the next
one with its billing run (flowjobs.billing.rollover). The new run is triggered for its due
time, not executed here (docs/billing.md)."""

from pydantic import Field, model_validator

from flowjobs.core.registry import task
from flowjobs.tasks._billing import Payload, lift_ref, run_billing


class PeriodPayload(Payload):
    billing_period_id: str = Field(alias="billingPeriodId", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _lift(cls, data):
        return lift_ref(data, "billingPeriod", "billingPeriodId")


@task("attempt-billing-period-transition", payload=PeriodPayload)
def attempt_billing_period_transition(payload: PeriodPayload, ctx):
    """Roll one subscription over to its next billing period."""
    from flowjobs.billing.rollover import transition_billing_period

    report = run_billing(transition_billing_period, ctx.billing, payload.billing_period_id)
    ctx.log.info("%s", report.detail)
    return report.as_dict()
