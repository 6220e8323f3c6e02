"""`attempt-billing-run {billingRunId}`: execute one billing run (flowjobs.billing.runs).

Only a `scheduled` run is executed; it is claimed for this flowjobs run, so a crashed or
failed attempt is resumed by the next attempt of the same run — which first asks Stripe what
became of the PaymentIntent recorded before confirmation — while any other run for the same
billing run does nothing.

Retries outlast a slow or unreachable Stripe: 6 attempts, 30 s → 15 min apart (about half an
hour in all; seconds apart, a Stripe that answers late would use them all up in a minute).
When the run fails for good, its failure hook `settle-billing-run` settles the billing run at
once (charged → recorded; not charged → scheduled again), so it is never left `started`.

An adjustment run (a plan change, flowjobs.billing.adjust) reads its adjustment parameters from
the billing run (`billing_runs.adjustment_params`), whatever path triggered it; the seed's
`adjustmentParams` payload field is accepted and not used.
"""

from typing import Any

from pydantic import Field, model_validator

from flowjobs.core.registry import task
from flowjobs.core.retry import RetryPolicy
from flowjobs.tasks._billing import Payload, lift_ref, run_billing

# Money moves here: back off for minutes, not seconds (issue #12, item 9).
CHARGE_RETRY = RetryPolicy(max_attempts=6, min_wait=30, max_wait=900, factor=3)


class AttemptBillingRunPayload(Payload):
    billing_run_id: str = Field(alias="billingRunId", min_length=1)
    adjustment_params: dict[str, Any] | None = Field(None, alias="adjustmentParams")

    @model_validator(mode="before")
    @classmethod
    def _lift(cls, data):
        return lift_ref(data, "billingRun", "billingRunId")


@task(
    "attempt-billing-run",
    payload=AttemptBillingRunPayload,
    retry=CHARGE_RETRY,
    on_failure="settle-billing-run",
)
def attempt_billing_run(payload: AttemptBillingRunPayload, ctx):
    """Charge one billing run (at most once)."""
    from flowjobs.billing.runs import execute_billing_run

    report = run_billing(execute_billing_run, ctx.billing, payload.billing_run_id, ctx.run_id)
    ctx.log.info("%s: %s (%s)", report.action, report.status, report.detail)
    return report.as_dict()
