"""A worker's outage record (flowjobs.core.outage): one line when an outage starts, one when it
ends, and a reminder every REMIND_EVERY while it lasts — a database that never takes writes
(a replica's URL) is not one warning and then silence. Pure logic, a pinned clock."""

import logging

from flowjobs.core import outage


def test_an_outage_is_said_once_then_reminded_then_ended(caplog):
    now = [1000.0]
    record = outage.Outage(lambda exc: "standby", clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="flowjobs.worker")
    error = RuntimeError("cannot execute UPDATE in a read-only transaction")
    for _ in range(50):  # tries within the first REMIND_EVERY: one line
        assert record.failed(error) is not None
        now[0] += 5.0
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("the database takes no writes")
    now[0] = 1000.0 + outage.REMIND_EVERY + 1
    record.failed(error)
    record.failed(error)  # not again at once
    assert len(caplog.records) == 2
    assert "takes no writes (a standby server, or a failover under way) still, for 301 s" in (
        caplog.records[1].getMessage()
    )
    assert record.ok() and "the database is back after 301.0s" in caplog.records[2].getMessage()
    assert not record.ok()  # nothing more to say


def test_a_fault_that_does_not_pass_is_not_an_outage():
    record = outage.Outage(lambda exc: None)
    assert record.failed(ValueError("a bug")) is None
    assert not record.down
