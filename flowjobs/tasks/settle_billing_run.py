"""`settle-billing-run` (a `FailedRun`): the failure hook of `attempt-billing-run`.

When an `attempt-billing-run` run fails for good (attempts or crash budget used up, aborted,
timed out), the engine triggers this task in the same transaction, keyed
`on-failure:<run id>`. It settles the billing run at once (flowjobs.billing.runs.
settle_failed_job): Stripe is asked about the PaymentIntent recorded before confirmation —
charged, declined or pending → that outcome is recorded; never charged → the PaymentIntent is
canceled, the billing run goes back to `scheduled` and `attempt-billing-run` is triggered
again after `[billing] requeue_after` × n, at most `[billing] max_requeues` times (then the
billing run fails and its retry ladder takes over). Each requeue raises an alert.

Its own retries outlast a slow Stripe like the charge's; if it still fails, fail-stale-payments
settles the billing run after `[billing] stale_payment_after`.
"""

from flowjobs.core.registry import FailedRun, task
from flowjobs.tasks.attempt_billing_run import CHARGE_RETRY


@task("settle-billing-run", payload=FailedRun, retry=CHARGE_RETRY)
def settle_billing_run(payload: FailedRun, ctx):
    """Settle the billing run of a failed attempt-billing-run run (ask Stripe; charge or requeue)."""
    from flowjobs.billing.runs import settle_failed_job
    from flowjobs.errors import AbortTaskRunError

    billing_run_id = (payload.payload or {}).get("billingRunId") or (
        (payload.payload or {}).get("billingRun") or {}
    ).get("id")
    if not billing_run_id:
        raise AbortTaskRunError(
            f"run {payload.run_id} of {payload.task} names no billing run: {payload.payload}"
        )
    alerts = ctx.settings.alerts
    report = settle_failed_job(
        ctx.billing,
        billing_run_id,
        payload.run_id,
        payload.error,
        alert=bool(alerts.email or alerts.webhook_url),
    )
    ctx.log.info(
        "billing run %s after run %s failed: %s, %s (%s)",
        billing_run_id,
        payload.run_id,
        report.action,
        report.status,
        report.detail,
    )
    return report.as_dict()
