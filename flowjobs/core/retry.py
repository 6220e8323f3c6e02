"""Durable retry policy: how many attempts a run gets and how long to wait between them.

The delay before attempt n+1 is computed with tenacity's wait strategies
(`wait_exponential_jitter`): min_wait * factor**(n-1), capped at max_wait, plus up to
min_wait of random jitter when `randomize` is set — Trigger.dev's defaults are 2 attempts,
1 s to 10 s, factor 2, randomized.
"""

from dataclasses import dataclass
from typing import Protocol


class Policy(Protocol):
    """What the engine reads from a task's retry policy: a `RetryPolicy`, or another object with
    the same attributes (`flowjobs.outbound.retry.SchedulePolicy`)."""

    @property
    def max_attempts(self) -> int: ...
    @property
    def min_wait(self) -> float: ...
    @property
    def max_wait(self) -> float: ...
    @property
    def factor(self) -> float: ...
    @property
    def randomize(self) -> bool: ...
    def delay_after(self, attempt: int) -> float: ...
    def describe(self) -> str: ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 2
    min_wait: float = 1.0
    max_wait: float = 10.0
    factor: float = 2.0
    randomize: bool = True

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.min_wait < 0 or self.max_wait < self.min_wait:
            raise ValueError("need 0 <= min_wait <= max_wait")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        import tenacity  # only workers pay for it; `flowjobs trigger` never computes a delay

        wait = tenacity.wait_exponential_jitter(
            multiplier=self.min_wait,
            max=self.max_wait,
            exp_base=self.factor,
            jitter=self.min_wait if self.randomize else 0,
        )
        state = tenacity.RetryCallState(
            retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={}
        )
        state.attempt_number = attempt
        return min(wait(state), self.max_wait)

    def describe(self) -> str:
        if self.max_attempts == 1:  # no retry: no wait to describe
            return "1 attempt, no retry"
        jitter = ", randomized" if self.randomize else ""
        return f"{self.max_attempts} attempts, {self.min_wait:g}s→{self.max_wait:g}s ×{self.factor:g}{jitter}"
