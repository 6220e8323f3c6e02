"""Time as a parameter. Stored times are integer epoch milliseconds (UTC).

Loops and queries take `now` from a clock object; tests pin it with FixedClock instead of
sleeping.
"""

import time
from datetime import UTC, datetime
from typing import overload


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FixedClock:
    """A clock that only moves when told to."""

    def __init__(self, now_ms: int):
        self._now = now_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1000)

    def set(self, now_ms: int) -> None:
        self._now = now_ms


@overload
def to_datetime(ms: int) -> datetime: ...
@overload
def to_datetime(ms: None) -> None: ...
@overload
def to_datetime(ms: int | None) -> datetime | None: ...
def to_datetime(ms: int | None) -> datetime | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@overload
def iso(ms: int) -> str: ...
@overload
def iso(ms: None) -> None: ...
@overload
def iso(ms: int | None) -> str | None: ...
def iso(ms: int | None) -> str | None:
    """ISO-8601 UTC with milliseconds, e.g. 2026-11-28T18:00:00.000Z."""
    if ms is None:
        return None
    return to_datetime(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_iso(text: str) -> int:
    """Parse ISO-8601 (a time without offset is UTC) into epoch ms; ValueError if it is not."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError(f"{text!r} is not an ISO-8601 time such as 2026-11-28T18:00:00Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def parse_since(text: str, now_ms: int) -> int:
    """A `--since`: a duration back from `now_ms` ("90m", "2d") or an ISO-8601 time; epoch ms.
    ValueError naming both forms if it is neither."""
    from flowjobs.durations import TooLong, parse_duration

    try:
        return now_ms - int(parse_duration(text) * 1000)
    except TooLong:
        raise
    except ValueError:
        pass
    try:
        return parse_iso(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration back from now (90m, 2d) nor an ISO-8601 time "
            "such as 2026-11-28T18:00:00Z"
        ) from None


class AcceleratedClock:
    """Reads `start_ms` at real time `real_start` (unix seconds) and runs `speed` times faster.
    Processes given the same three values share one simulated time (FLOWJOBS_CLOCK)."""

    def __init__(self, start_ms: int, speed: float, real_start: float):
        self._start, self._speed, self._real = start_ms, speed, real_start

    def now_ms(self) -> int:
        return self._start + int((time.time() - self._real) * 1000 * self._speed)


def clock_from_env(value: str | None):
    """FLOWJOBS_CLOCK="<ISO start> x<speed> @<unix seconds>": a testing hook that runs
    schedules fast; None when unset."""
    if not value:
        return None
    try:
        start, speed, real = value.split()
        return AcceleratedClock(parse_iso(start), float(speed.lstrip("x")), float(real.lstrip("@")))
    except ValueError:
        from flowjobs.errors import ConfigError

        raise ConfigError(
            [f"FLOWJOBS_CLOCK: {value!r} is not '<ISO start> x<speed> @<unix seconds>'"]
        ) from None


def iso_datetime(moment: datetime | None) -> str | None:
    """A timezone-aware datetime as `iso` writes an epoch millisecond (UTC, milliseconds, Z):
    the one form every JSON output and table of flowjobs uses for a moment."""
    if moment is None:
        return None
    # a naive moment is UTC, as stored moments are (tables.UTCDateTime), not local time
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
