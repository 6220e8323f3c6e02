"""Billing-period arithmetic (spec §7.1): month and year intervals in UTC with day clamping.

The next period starts exactly where the previous one ends. Month periods add
`interval_count` months to the *start* and clamp the day to the target month's length, so
Jan 31 → Feb 28 → Mar 28 (the anchor is not re-applied, as upstream — see docs/billing.md).
Year periods clamp Feb 29 to Feb 28 in non-leap years. Day and week intervals are refused.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

from flowjobs.billing.enums import IntervalUnit


class PeriodError(ValueError):
    pass


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus `months` calendar months, the day clamped to the month's length."""
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_end(start: datetime, unit: str | None, count: int | None) -> datetime:
    """The end of a period that starts at `start` (aware UTC)."""
    if start.tzinfo is None:
        raise PeriodError("period start must be timezone-aware")
    if count is None or count <= 0:
        raise PeriodError(f"interval count must be positive, got {count!r}")
    start = start.astimezone(UTC)
    if unit == IntervalUnit.MONTH:
        end = add_months(start, count)
    elif unit == IntervalUnit.YEAR:
        end = add_months(start, 12 * count)
    else:
        raise PeriodError(f"billing periods support month and year intervals, not {unit!r}")
    if end <= start:
        raise PeriodError("period end must be after its start")
    return end


def next_period(previous_end: datetime, unit: str, count: int) -> tuple[datetime, datetime]:
    """(start, end) of the period following one that ended at `previous_end`."""
    return previous_end, period_end(previous_end, unit, count)


def period_status_by_clock(start: datetime, end: datetime, now: datetime) -> str:
    """`upcoming` before the start, `active` inside, `completed` after the end."""
    if now < start:
        return "upcoming"
    if now < end:
        return "active"
    return "completed"
