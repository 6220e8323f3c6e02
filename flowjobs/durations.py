"""Durations as people write them in flowjobs.toml and on the command line: "500ms", "1s", "10m", "2h", "30d"."""

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_SECONDS = 100 * 365 * 86400.0


class TooLong(ValueError):
    """A duration written right, but longer than MAX_SECONDS."""


_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ValueError with a readable message."""
    if not isinstance(text, str):
        raise ValueError(
            f"expected a duration such as '500ms', '1s', '10m', '2h' or '30d', got {text!r}"
        )
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; write it like '500ms', '1s', '10m', '2h' or '30d'"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_SECONDS:  # a typo, and past what an epoch millisecond can hold
        raise TooLong(f"{text!r} is longer than 100 years; no duration here needs that")
    return seconds


def format_duration(seconds: float) -> str:
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{round(seconds * 1000)}ms"
