"""Proration arithmetic for plan changes (spec §7.7), a pure function on integers.

    fraction  = (adjusted at − period start) / (period end − period start), in milliseconds
    old part  = round(old total × fraction)
    new part  = round(new total × (1 − fraction)), less what takes the sum above both totals
    net       = max(old part + new part − already paid in the period, 0)

`round` is upstream's `Math.round` (half up); amounts are minor units, never negative, so the
rounding is exact integer arithmetic — no floats. Downgrades never refund: the net is never
below zero.

Changed from the spec: old part + new part never exceeds the higher of the two totals. Each
part is rounded on its own, so with the same total before and after and both parts exactly
at .5 the spec's sum was one minor unit above the plan itself: a change to the same price
after paying for the period charged 1 cent — an adjustment billing run for an amount no card
network accepts. Nowhere else does the sum pass that bound, so every other case is the
spec's formula to the minor unit (docs/billing-fidelity.md §7.7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flowjobs.billing.money import format_money
from flowjobs.core.clock import iso_datetime


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def round_half_up(numerator: int, denominator: int) -> int:
    """round(numerator / denominator), halves up, for numerator ≥ 0 < denominator."""
    return (2 * numerator + denominator) // (2 * denominator)


@dataclass(frozen=True)
class Proration:
    elapsed_ms: int
    period_ms: int
    old_total: int
    new_total: int
    old_part: int
    new_part: int
    paid: int
    net: int
    currency: str

    @property
    def fraction(self) -> float:  # for display only; the money never goes through a float
        return self.elapsed_ms / self.period_ms

    def as_dict(self) -> dict:
        money = lambda v: format_money(v, self.currency)  # noqa: E731
        return {
            "fraction": round(self.fraction, 6),
            "elapsedMs": self.elapsed_ms,
            "periodMs": self.period_ms,
            "currency": self.currency,
            "oldTotal": self.old_total,
            "newTotal": self.new_total,
            "oldPart": self.old_part,
            "newPart": self.new_part,
            "alreadyPaid": self.paid,
            "net": self.net,
            "display": {
                "oldTotal": money(self.old_total),
                "newTotal": money(self.new_total),
                "oldPart": money(self.old_part),
                "newPart": money(self.new_part),
                "alreadyPaid": money(self.paid),
                "net": money(self.net),
            },
        }

    def lines(self) -> list[str]:
        money = lambda v: format_money(v, self.currency)  # noqa: E731
        pct = f"{self.fraction * 100:.4f} %"
        return [
            f"fraction through the period: {pct} ({self.elapsed_ms} of {self.period_ms} ms)",
            f"old part:     {money(self.old_part)}  = round({money(self.old_total)} × {pct})",
            f"new part:     {money(self.new_part)}  = {money(self.new_total)} × (100 % − {pct}),"
            " rounded (the two parts never add up to more than the higher plan)",
            f"already paid: {money(self.paid)}  (processing and succeeded payments in the period)",
            f"net charge:   {money(self.net)}  = max(old part + new part − already paid, 0)",
        ]


def prorate(
    start: datetime,
    end: datetime,
    at: datetime,
    old_total: int,
    new_total: int,
    paid: int,
    currency: str,
) -> Proration:
    """The spec's proration at `at` within [start, end)."""
    period_ms = _ms(end) - _ms(start)
    if period_ms <= 0:
        raise ValueError(
            f"the billing period ends ({iso_datetime(end)}) before it starts ({iso_datetime(start)})"
        )
    elapsed = min(max(_ms(at) - _ms(start), 0), period_ms)
    if old_total < 0 or new_total < 0 or paid < 0:
        raise ValueError("totals and payments are never negative")
    old_part = round_half_up(old_total * elapsed, period_ms)
    new_part = round_half_up(new_total * (period_ms - elapsed), period_ms)
    new_part = min(new_part, max(old_total, new_total) - old_part)  # never above either plan
    net = max(old_part + new_part - paid, 0)
    return Proration(
        elapsed, period_ms, old_total, new_total, old_part, new_part, paid, net, currency
    )
