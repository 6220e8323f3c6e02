"""Times as the billing code passes them: aware UTC datetimes from and to epoch milliseconds
(the job store's unit). The column type is `flowjobs.store.tables.UTCDateTime`."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def ms_from_utc(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
