"""Composition root: Settings -> database, job store, registry, clock, client.

Only this module wires concrete pieces together. Everything is created lazily so a command
pays only for what it uses (`flowjobs --help` opens no database and imports no task).
"""

from __future__ import annotations

from functools import cached_property

from flowjobs.config import Settings
from flowjobs.core.clock import SystemClock
from flowjobs.core.retry import RetryPolicy


class Runtime:
    def __init__(self, settings: Settings, clock=None, migrate: bool = True):
        self.settings = settings
        import os

        from flowjobs.core.clock import clock_from_env

        self.clock = clock or clock_from_env(os.environ.get("FLOWJOBS_CLOCK")) or SystemClock()
        self._migrate = migrate

    @cached_property
    def db(self):
        from flowjobs.store.db import Database

        return Database(self.settings.database_url(), self.settings.database.busy_timeout)

    @cached_property
    def store(self):
        from flowjobs.store.jobs import JobStore

        if self._migrate:
            from flowjobs.store.migrate import ensure_schema

            ensure_schema(self.db)
        return JobStore(self.db)

    @cached_property
    def registry(self):
        from flowjobs.core.registry import load_modules, registry
        from flowjobs.tasks import BUILTIN_MODULES

        load_modules(BUILTIN_MODULES + list(self.settings.tasks.modules))
        return registry

    @cached_property
    def retry_defaults(self) -> RetryPolicy:
        r = self.settings.retry
        return RetryPolicy(r.max_attempts, r.min_wait, r.max_wait, r.factor, r.randomize)

    @cached_property
    def client(self):
        from flowjobs.core.client import Client

        return Client(
            self.store,
            self._client_registry(),
            self.clock,
            self.retry_defaults,
            self.settings.run.idempotency_key_ttl,
        )

    def _client_registry(self):
        """The registry as the client needs it. With only the built-in tasks configured, a
        task's module is imported when the task is first triggered (importing all fifteen,
        with their payload models, was ~55 ms of every `flowjobs trigger`); with `[tasks]
        modules`, everything is loaded first, so that a task id declared twice is refused."""
        if "registry" in self.__dict__ or self.settings.tasks.modules:
            return self.registry
        from flowjobs.core.registry import registry
        from flowjobs.tasks import load_builtin_for

        registry.loader = load_builtin_for
        return registry

    @cached_property
    def scheduler(self):
        from flowjobs.core.scheduler import Scheduler

        return Scheduler(self)

    @cached_property
    def billing_engine(self):
        from flowjobs.billing.db import make_engine

        self.store  # noqa: B018 - the schema (job and billing tables) is migrated on first use
        return make_engine(self.settings.database_url(), self.settings.database.busy_timeout)

    @cached_property
    def billing(self):
        from flowjobs.adapters.stripe_gateway import StripeGateway
        from flowjobs.billing.service import Billing

        billing = Billing(
            self.billing_engine,
            self.clock,
            self.client,
            lambda: StripeGateway(self.settings.stripe),
            self.settings.billing,
        )
        billing.outbound = self.settings.webhooks.outbound
        return billing

    @cached_property
    def documents(self):
        from flowjobs.adapters.storage import LocalStorage

        return LocalStorage(self.settings.base_dir / self.settings.documents.dir)

    @cached_property
    def mailer(self):
        from flowjobs.adapters.mailer import make_mailer

        return make_mailer(self.settings.mail, self.settings.base_dir)

    def trigger(self, task: str, payload=None, **options):
        return self.client.trigger(task, payload, **options)

    def close(self) -> None:
        if "billing_engine" in self.__dict__:
            self.billing_engine.dispose()
        if "db" in self.__dict__:
            self.db.close()
