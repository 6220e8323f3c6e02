"""`Billing`: the billing engine's dependencies in one place (units of work, clock, triggers,
Stripe gateway, tax calculator, settings), handed to the job functions. Transactions are the
store's (`flowjobs.store.units`); Billing adds only billing things to them: the clock's `now`
and, in a dry run, a Stripe gateway that refuses writes.

Follow-up runs (notifications, PDFs, retries) are triggered with `session=` so they commit
with the billing writes that cause them, or not at all.
"""

from __future__ import annotations

import importlib
import logging
from datetime import datetime, timedelta
from typing import Any, ClassVar

from flowjobs.billing.tax import FlatRateTax, ZeroTax
from flowjobs.billing.types import utc_from_ms
from flowjobs.errors import ConfigError

log = logging.getLogger("flowjobs.billing")


def load_tax_calculator(spec: str):
    """ "" → ZeroTax; "flat:<percent>" → FlatRateTax; "module:object" → that object (or class)."""
    if not spec:
        return ZeroTax()
    if spec.startswith("flat:"):
        return FlatRateTax(spec.removeprefix("flat:"))
    module, _, name = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError([f"billing.tax_calculator: cannot load {spec!r}: {exc}"]) from None
    return obj() if isinstance(obj, type) else obj


class Billing:
    def __init__(self, units, clock, client, gateway_factory, settings, outbound=None):
        self.units = units  # flowjobs.store.units.Units
        self.clock = clock
        self.client = client
        self._gateway_factory = gateway_factory
        self._gateway = None
        self.settings = settings  # BillingSettings
        self.tax = load_tax_calculator(settings.tax_calculator)
        self.outbound = outbound  # [webhooks.outbound] (OutboundWebhookSettings)

    @property
    def engine(self):
        return self.units.engine

    @property
    def gateway(self):
        if self._gateway is None:
            self._gateway = self._gateway_factory()
        return ReadOnlyGateway(self._gateway) if self.units.in_dry_run else self._gateway

    def now(self) -> datetime:
        return utc_from_ms(self.clock.now_ms())

    def unit(self, now: datetime | None = None):
        """A unit of work (one transaction) stamped with `now` (default: the clock's)."""
        return self.units.unit(now or self.now())

    def dry_run(self):
        """One transaction that every unit of work joins and that is always rolled back;
        Stripe writes are refused meanwhile. Not thread-safe: for one command at a time."""
        return self.units.dry_run(self.now())

    def trigger(
        self,
        session,
        task: str,
        payload: dict,
        key: str | None = None,
        run_at: datetime | None = None,
    ):
        """Trigger `task` inside `session`'s transaction (deduplicated by `key`)."""
        options: dict[str, Any] = {}
        if key:
            options["idempotency_key"] = key
        if run_at is not None:
            options["run_at"] = int(run_at.timestamp() * 1000)
        return self.client.trigger(task, payload, session=session, **options)

    def withdraw(self, session, task: str, key_prefix: str, reason: str) -> list[str]:
        """Cancel, inside `session`'s transaction, the runs of `task` keyed `key_prefix…` that
        have not started (a notification the change being written makes untrue)."""
        return self.client.withdraw(task, key_prefix, reason, session=session)

    def queue_billing_run(self, session, billing_run_id: str, run_at: datetime | None = None):
        """Trigger `attempt-billing-run` for a billing run inside `session`'s transaction, under
        the one key and payload every path uses (`attempt-billing-run:<id>`, `{billingRunId}`):
        two paths that queue the same billing run while the first job lives make one job."""
        return self.trigger(
            session,
            "attempt-billing-run",
            {"billingRunId": billing_run_id},
            key=f"attempt-billing-run:{billing_run_id}",
            run_at=run_at,
        )

    def retry_delay(self, attempt_number: int) -> timedelta | None:
        """Wait before the attempt after `attempt_number`, or None when no attempt is left."""
        days = self.settings.retry_days
        if attempt_number > len(days):
            return None
        return timedelta(days=days[attempt_number - 1])


class DryRunRefused(Exception):
    """A dry run tried to write to Stripe."""


class ReadOnlyGateway:
    """The Stripe gateway during a dry run: reads pass through, writes are refused."""

    READS: ClassVar[frozenset[str]] = frozenset(
        {
            "retrieve_payment_intent",
            "retrieve_intent_object",
            "retrieve_charge",
            "count_charges",
            "client",
            "settings",
        }
    )

    def __init__(self, gateway):
        self._gateway = gateway

    def __getattr__(self, name):
        if name in self.READS:
            return getattr(self._gateway, name)
        raise DryRunRefused(f"a dry run makes no Stripe writes (refused: {name})")
