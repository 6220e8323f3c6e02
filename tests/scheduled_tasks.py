"""Tasks with schedules, for the scheduler tests (loaded only by them)."""

from flowjobs.core.registry import task
from flowjobs.core.scheduler import SchedulePayload


@task("test-hourly", payload=SchedulePayload, cron="0 * * * *")
def hourly(payload: SchedulePayload, ctx):
    return {
        "from": payload.last_timestamp.isoformat() if payload.last_timestamp else None,
        "to": payload.timestamp.isoformat(),
    }


@task("test-every-minute", payload=SchedulePayload)
def every_minute(payload, ctx):
    return None
