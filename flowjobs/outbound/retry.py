"""The delivery task's retry policy: the `[webhooks.outbound] retry_schedule`, not exponential.

A task's retry policy is fixed when the task is declared, but the schedule is configuration:
`SchedulePolicy` is the policy object the task declares, and `configure()` points it at the
settings before any delivery run is triggered (the run's `max_attempts` is taken then) and
before each attempt runs (the worker reads `delay_after` when the attempt fails). It has the
attributes the engine reads from a RetryPolicy (`max_attempts`, `delay_after`, `describe`).
"""

from __future__ import annotations

from flowjobs.config import OutboundWebhookSettings


class SchedulePolicy:
    randomize = False
    factor = 1.0

    def __init__(self, schedule: list[float]):
        self.schedule = list(schedule)

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    @property
    def min_wait(self) -> float:
        return min(self.schedule, default=0.0)

    @property
    def max_wait(self) -> float:
        return max(self.schedule, default=0.0)

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if not self.schedule:
            return 0.0
        return self.schedule[min(attempt, len(self.schedule)) - 1]

    def describe(self) -> str:
        if not self.schedule:
            return "1 attempt, no retry"
        return f"{self.max_attempts} attempts, schedule " + ", ".join(
            f"{d:g}s" for d in self.schedule
        )


POLICY = SchedulePolicy(OutboundWebhookSettings().retry_schedule)


def configure(settings: OutboundWebhookSettings) -> SchedulePolicy:
    POLICY.schedule = list(settings.retry_schedule)
    return POLICY
