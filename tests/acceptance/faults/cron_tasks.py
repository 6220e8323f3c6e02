"""Scheduled tasks for the cron-window tests (loaded through `[tasks] modules`, only by them).

`test-cron-window` fails (at once, AbortTaskRunError) for the slots listed in FAIL, and for
those in FAIL_CHILD completes but triggers a child that fails: both lose the slot's window.
`test-cron-picky` takes the schedule payload, but refuses slots from 2030 on, so a schedule on
it passes configuration and then fails to enqueue."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import model_validator

from flowjobs.core.clock import iso
from flowjobs.core.registry import task
from flowjobs.core.scheduler import SchedulePayload
from flowjobs.errors import AbortTaskRunError

FAIL: set[str] = set()  # slot ISO times (iso()) whose run fails
FAIL_CHILD: set[str] = set()  # ... whose run triggers a failing child
WINDOWS: list[tuple[str | None, str]] = []  # (lastTimestamp, timestamp) of every run that succeeded


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso(int(value.timestamp() * 1000))


@task("test-cron-window", payload=SchedulePayload)
def window(payload: SchedulePayload, ctx):
    at = _iso(payload.timestamp)
    if at in FAIL:
        raise AbortTaskRunError(f"the {at} slot fails")
    if at in FAIL_CHILD:
        ctx.trigger("test-abort")
    WINDOWS.append((_iso(payload.last_timestamp), at))
    return None


class Picky(SchedulePayload):
    @model_validator(mode="after")
    def _before_2030(self):
        if self.timestamp >= datetime(2030, 1, 1, tzinfo=UTC):
            raise ValueError("no slots from 2030 on")
        return self


@task("test-cron-picky", payload=Picky)
def picky(payload: Picky, ctx):
    return None
