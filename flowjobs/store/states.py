"""The closed vocabularies of the job tables: a run's status and what an attempt recorded.

Every status flowjobs names in Python is one of these members; SQL names them only in the
statement catalogue (`store/queries.py`), which builds its lists from these sets, and in the
CHECK constraints of migration 0001. StrEnum members compare equal to their text, so rows
read back from either dialect compare with them directly.

    delayed ──(run_at reached)──> queued ──(claimed)──> executing ──> completed
                                     ^                      │  └────> failed | canceled
                                     └──── retrying <───────┘   (expired: its key timed out)
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    DELAYED = "delayed"  # waiting for run_at
    QUEUED = "queued"  # due; waiting for a worker
    EXECUTING = "executing"  # claimed by a worker holding its lease
    RETRYING = "retrying"  # an attempt failed or crashed; due again at run_at
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


class AttemptOutcome(StrEnum):
    """What one attempt ended as (the executor's closed set; see `core.executor`)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"
    CRASHED = "crashed"


PENDING = frozenset({RunStatus.DELAYED, RunStatus.QUEUED, RunStatus.RETRYING})  # will run
# not started yet: no attempt (a run that was started and ends unfinished is retrying)
WAITING = frozenset({RunStatus.DELAYED, RunStatus.QUEUED})
TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.EXPIRED})
UNSUCCESSFUL = frozenset({RunStatus.FAILED, RunStatus.CANCELED, RunStatus.EXPIRED})
ORDER = (  # for listings: the order a run passes through
    RunStatus.DELAYED,
    RunStatus.QUEUED,
    RunStatus.EXECUTING,
    RunStatus.RETRYING,
    RunStatus.COMPLETED,
    RunStatus.FAILED,
    RunStatus.CANCELED,
    RunStatus.EXPIRED,
)


def sql_list(statuses, order=ORDER) -> str:
    """`('a', 'b')` for an SQL IN list, in `order`."""
    return "(" + ", ".join(f"'{s}'" for s in order if s in statuses) + ")"
