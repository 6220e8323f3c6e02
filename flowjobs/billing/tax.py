"""Tax calculation port. Only merchant-of-record organisations are taxed (spec §7.5).

The default calculator computes zero; a deployment with Stripe Tax (or another engine)
plugs its own in through `[billing] tax_calculator = "module:object"`.
"""

from __future__ import annotations

from typing import Protocol


class TaxCalculator(Protocol):
    def calculate(
        self,
        *,
        pretax_amount: int,
        currency: str,
        customer_country: str | None,
        organization_id: str,
        livemode: bool,
    ) -> int:
        """Tax (exclusive) in minor units on `pretax_amount`."""


class ZeroTax:
    """Computes no tax: the default until a real tax engine is configured."""

    def calculate(
        self,
        *,
        pretax_amount: int,
        currency: str,
        customer_country: str | None,
        organization_id: str,
        livemode: bool,
    ) -> int:
        return 0


class FlatRateTax:
    """A fixed percentage (e.g. "20" for 20 %) of the pretax amount; useful for tests and demos."""

    def __init__(self, percent: str):
        self.percent = percent

    def calculate(
        self,
        *,
        pretax_amount: int,
        currency: str,
        customer_country: str | None,
        organization_id: str,
        livemode: bool,
    ) -> int:
        from flowjobs.billing.money import percent_of

        return percent_of(pretax_amount, self.percent)
