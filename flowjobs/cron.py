"""Cron slots in an IANA timezone, as UTC epoch milliseconds.

The expression is parsed and stepped by croniter on *local wall-clock* times; each local time
is then mapped to one UTC instant with explicit DST rules:
  - a local time that occurs twice (fall back) fires once, at its first occurrence;
  - a local time that does not exist (spring forward) fires at the end of the gap;
  - two local times that map to the same instant fire once.
So slots strictly increase, and a daily 02:30 job runs exactly once on both DST days.
Five fields (minute hour day month weekday, with ranges, steps, lists and names) or one of
@hourly @daily @weekly @monthly @yearly (@annually, @midnight). croniter's `L` (last day or
weekday), `W` and `#` (nth weekday) work too; its random `R` and hashed `H` are refused, and so
is an expression that never fires.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
FOLD_MARGIN = timedelta(hours=3)  # the largest wall-clock jump back any zone makes, with room
UTC = UTC


@lru_cache(maxsize=256)
def normalise(expression: str) -> str:
    """The 5-field form of an expression; ValueError with a readable message if invalid."""
    from croniter import CroniterBadDateError, croniter

    text = " ".join(str(expression).split())
    text = MACROS.get(text.lower(), text)
    if len(text.split(" ")) != 5:
        raise ValueError(
            f"{expression!r} is not a cron expression: use 5 fields "
            "(minute hour day month weekday) or @hourly/@daily/@weekly/@monthly/@yearly"
        )
    if not croniter.is_valid(text):
        raise ValueError(f"{expression!r} is not a valid cron expression")
    if any(part.upper().startswith("R") for part in re.split(r"[ ,/]", text)):
        # croniter's "random" minute or hour: drawn anew by every process and every tick, so
        # one hourly schedule fired several times an hour
        raise ValueError(f"{expression!r}: 'R' (a random time) is not supported; name the time")
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(
            f"{expression!r} never fires (a day no month has, e.g. 31 February)"
        ) from None
    return text


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not an IANA timezone (e.g. 'UTC', 'Europe/Berlin')"
        ) from None


def _to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """Map a naive local wall time to one UTC instant (rules in the module docstring)."""
    first = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == local:
        return first
    # In a spring-forward gap: the first instant whose wall time is at or after `local`.
    t = local.replace(tzinfo=tz, fold=1).astimezone(UTC).replace(second=0, microsecond=0)
    while t.astimezone(tz).replace(tzinfo=None) < local:
        t += timedelta(minutes=1)
    return t


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def slots_after(expression: str, tz_name: str, after_ms: int) -> Iterator[int]:
    """Every slot strictly after `after_ms`, in increasing order (an endless generator)."""
    from croniter import croniter

    tz = zone(tz_name)
    start = datetime.fromtimestamp(after_ms / 1000, UTC).astimezone(tz).replace(tzinfo=None)
    it = croniter(normalise(expression), start - FOLD_MARGIN)
    last = after_ms
    while True:
        slot = _ms(_to_utc(it.get_next(datetime), tz))
        if slot > last:
            last = slot
            yield slot


def slots_between(
    expression: str, tz_name: str, after_ms: int, until_ms: int, limit: int | None = None
) -> list[int]:
    """Slots in (after_ms, until_ms], oldest first, at most `limit`."""
    found: list[int] = []
    for slot in slots_after(expression, tz_name, after_ms):
        if slot > until_ms or (limit is not None and len(found) >= limit):
            break
        found.append(slot)
    return found


def next_slots(expression: str, tz_name: str, after_ms: int, count: int) -> list[int]:
    it = slots_after(expression, tz_name, after_ms)
    return [next(it) for _ in range(count)]


def previous_slot(expression: str, tz_name: str, before_ms: int) -> int | None:
    """The latest slot strictly before `before_ms`, searching back up to 3,000 days (~8.2
    years: a 29 February slot can lie 8 years back, across 2100); None beyond."""
    window, reach = 3600_000, 3000 * 86400_000
    while True:
        window = min(window, reach)
        found = slots_between(expression, tz_name, before_ms - window, before_ms - 1)
        if found:
            return found[-1]
        if window == reach:
            return None
        window *= 4
