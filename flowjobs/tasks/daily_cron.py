"""`daily-cron` (`0 0 * * *`): upstream only logs its start and end; so does this."""

from flowjobs.core.clock import iso_datetime
from flowjobs.core.registry import task
from flowjobs.core.scheduler import SchedulePayload


@task("daily-cron", payload=SchedulePayload, cron="0 0 * * *")
def daily_cron(payload: SchedulePayload, ctx):
    """Log the daily tick (no behaviour upstream)."""
    ctx.log.info("daily cron for %s", iso_datetime(payload.timestamp))
    return {"timestamp": iso_datetime(payload.timestamp)}
