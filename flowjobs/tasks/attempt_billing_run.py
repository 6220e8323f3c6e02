"""`attempt-billing-run {billingRunId}`: execute one billing run (flowjobs.billing.runs).

Only a `scheduled` run is executed; it is claimed for this flowjobs run, so a crashed attempt
is resumed by the next attempt of the same run (and the charge request replayed under its
Stripe idempotency key), while any other run for the same billing run does nothing.
Retried up to 5 attempts: a Stripe outage or a lost worker must not strand a claimed run.
"""

from typing import Any

from pydantic import Field, model_validator

from flowjobs.core.registry import task
from flowjobs.core.retry import RetryPolicy
from flowjobs.tasks._billing import Payload, lift_ref, run_billing


class AttemptBillingRunPayload(Payload):
    billing_run_id: str = Field(alias="billingRunId", min_length=1)
    adjustment_params: dict[str, Any] | None = Field(None, alias="adjustmentParams")

    @model_validator(mode="before")
    @classmethod
    def _lift(cls, data):
        return lift_ref(data, "billingRun", "billingRunId")


@task("attempt-billing-run", payload=AttemptBillingRunPayload,
      retry=RetryPolicy(max_attempts=5, min_wait=2, max_wait=60))
def attempt_billing_run(payload: AttemptBillingRunPayload, ctx):
    """Charge one billing run (at most once)."""
    from flowjobs.billing.runs import execute_billing_run

    report = run_billing(execute_billing_run, ctx.runtime.billing, payload.billing_run_id, ctx.run_id)
    ctx.log.info("%s: %s (%s)", report.action, report.status, report.detail)
    return report.as_dict()
