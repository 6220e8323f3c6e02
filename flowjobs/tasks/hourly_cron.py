"""`hourly-cron` (`0 * * * *`): purge expired checkout sessions, then trigger the four
hourly fan-outs — all in one transaction, each keyed `<task>:<slot ISO>` so a repeated slot
triggers nothing new. The window is the schedule's previous slot (`lastTimestamp`) to this
slot, or the last hour when there is none, so consecutive runs tile time."""

from datetime import timedelta

from flowjobs.core.registry import task
from flowjobs.core.scheduler import SchedulePayload
from flowjobs.tasks._billing import iso_of, utc


@task("hourly-cron", payload=SchedulePayload, cron="0 * * * *")
def hourly_cron(payload: SchedulePayload, ctx):
    """Purge expired checkout sessions and fan out the hourly billing work."""
    from flowjobs.billing.fanout import purge_expired_checkout_sessions

    b = ctx.billing
    slot = utc(payload.timestamp)
    start = utc(payload.last_timestamp) if payload.last_timestamp else slot - timedelta(hours=1)
    at, since = iso_of(slot), iso_of(start)
    children = [
        ("attempt-billing-runs", {"timestamp": at}),
        ("attempt-cancel-scheduled-subscriptions", {"startDateISO": since, "endDateISO": at}),
        ("attempt-transition-billing-periods", {"lastTimestamp": since, "currentTimestamp": at}),
        ("fail-stale-payments", {"timestamp": at}),
    ]
    with b.unit() as s:
        purged = purge_expired_checkout_sessions(s, b.now(), b.settings.checkout_session_retention)
        runs = {
            name: ctx.trigger(name, body, session=s, idempotency_key=f"{name}:{at}").id
            for name, body in children
        }
    ctx.log.info("window %s .. %s; purged %d checkout sessions", since, at, purged)
    return {"window": [since, at], "purgedCheckoutSessions": purged, "triggered": runs}
