"""Exceptions that cross layers. Each carries the exit code the CLI maps it to."""

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    FAILURE = 1  # a run ended other than `completed` (trigger --wait), or a task failed
    BAD_INPUT = 2  # bad configuration, arguments, payload or idempotency-key reuse
    NOT_FOUND = 3  # unknown run, task-owned object or schedule
    DATABASE = 4  # database unreachable (or went away) or its schema newer than this flowjobs
    DATABASE_LOCKED = 5  # SQLite file locked by another program past the busy timeout: try again
    DISK_FULL = 6  # the database's disk (or quota) is full: free space, nothing was half-written
    WAIT_TIMEOUT = 124  # trigger --wait gave up before the run ended


class FlowjobsError(Exception):
    exit_status = ExitStatus.FAILURE


class ConfigError(FlowjobsError):
    """One or more configuration problems; `problems` holds `field: message` lines."""

    exit_status = ExitStatus.BAD_INPUT

    def __init__(self, problems: list[str], source: str = "configuration"):
        self.problems = problems
        self.source = source
        super().__init__(f"invalid {source}:\n" + "\n".join(f"  {p}" for p in problems))


class BadInput(FlowjobsError):
    exit_status = ExitStatus.BAD_INPUT


class UnknownTask(BadInput):
    pass


class PayloadInvalid(BadInput):
    pass


class IdempotencyConflict(BadInput):
    """An idempotency key was reused with a different payload."""


class NotFound(FlowjobsError):
    exit_status = ExitStatus.NOT_FOUND
    in_database = True  # what was not found is looked for in the database (messages say which)


class UnknownSchedule(NotFound):
    in_database = False  # schedules are configuration (flowjobs.toml and the built-in ones)


class DatabaseError(FlowjobsError):
    exit_status = ExitStatus.DATABASE


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached right now (server down, connection dropped)."""


class DatabaseGone(DatabaseError):
    """SQLite: the database file was deleted or replaced under a running process; what it would
    write now is lost, unseen by every process that opens the path (exit 4)."""


class DatabaseLocked(DatabaseError):
    exit_status = ExitStatus.DATABASE_LOCKED


class DiskFull(DatabaseError):
    exit_status = ExitStatus.DISK_FULL


class AbortTaskRunError(Exception):
    """Raise inside a task to fail the run at once, without further attempts."""
