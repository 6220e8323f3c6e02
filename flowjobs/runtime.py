"""Composition root: Settings -> database, job store, registry, clock, client.

Only this module wires concrete pieces together. Everything is created lazily so a command
pays only for what it uses (`flowjobs --help` opens no database and imports no task).
"""

from __future__ import annotations

from dataclasses import replace
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
    def _tasks(self):
        """The one registry of this runtime. With only the built-in tasks configured, a task's
        module is loaded when the task is first asked for (loading all fifteen, with their
        payload models, was ~55 ms of every `flowjobs trigger`)."""
        from flowjobs.core.registry import Registry
        from flowjobs.tasks import load_builtin_for

        return Registry(loader=load_builtin_for)

    @cached_property
    def registry(self):
        """Every task loaded: the built-in ones and `[tasks] modules` (a task id declared twice
        is refused here)."""
        import sys

        from flowjobs.tasks import BUILTIN_MODULES

        if self.settings.tasks.modules:
            # `[tasks] modules` are found beside the configuration file (else in the working
            # directory), as rq and celery find them, whoever starts the process from where —
            # a web application triggering from Python too (it had to run from that folder)
            folder = str(self.settings.base_dir)
            if folder not in sys.path:
                sys.path.insert(0, folder)
        registry = self._tasks
        registry.load(BUILTIN_MODULES + list(self.settings.tasks.modules))
        return registry

    @cached_property
    def retry_defaults(self) -> RetryPolicy:
        r = self.settings.retry
        return RetryPolicy(r.max_attempts, r.min_wait, r.max_wait, r.factor, r.randomize)

    @cached_property
    def client(self):
        from flowjobs.core.client import Client
        from flowjobs.outbound.retry import configure

        # the delivery task's policy follows [webhooks.outbound] retry_schedule in every process
        # that triggers its runs: a `runs replay` from the CLI took the default schedule's
        # max_attempts (8) instead of the configured one
        configure(self.settings.webhooks.outbound)
        return Client(
            self.store,
            self._client_registry(),
            self.clock,
            self.retry_defaults,
            self.settings.run.idempotency_key_ttl,
        )

    def task(self, task_id: str):
        """The task `task_id` (UnknownTask if there is none), found without the database."""
        return self._client_registry().get(task_id)

    def _client_registry(self):
        """The registry as the client needs it: loaded lazily unless `[tasks] modules` are
        configured (then everything is loaded first, so that a task id declared twice is
        refused before anything is triggered)."""
        return self.registry if self.settings.tasks.modules else self._tasks

    @cached_property
    def schedules(self):
        from flowjobs.core.scheduler import resolve

        return resolve(self.registry, self.settings)

    @cached_property
    def scheduler(self):
        from flowjobs.core.scheduler import Scheduler

        schedules = self.schedules  # a bad schedule is refused before a database is made
        alerts = self.settings.alerts
        alert_task: str | None = None
        if alerts.email or alerts.webhook_url:
            from flowjobs.notifications.alerts import ALERT_TASK

            alert_task = ALERT_TASK
        return Scheduler(
            self.store,
            self.client,
            schedules,
            self.clock,
            grace=self.settings.scheduler.grace,
            alert_task=alert_task,
            interval=self.settings.scheduler.interval,
        )

    # -- workers and duties ----------------------------------------------------------------
    def worker_options(self, **overrides):
        """`WorkerOptions` from `[worker]`, `[run]` and `[retry]`, with `overrides` (None: the
        configured value)."""
        from dataclasses import replace

        from flowjobs.core.worker import WorkerOptions

        ws, run = self.settings.worker, self.settings.run
        configured = WorkerOptions(
            concurrency=ws.concurrency,
            queues=ws.queues,
            lease=ws.lease,
            poll_interval=ws.poll_interval,
            rescue_interval=ws.rescue_interval,
            shutdown_timeout=ws.shutdown_timeout,
            timeout_grace=run.timeout_grace,
            max_crashes=run.max_crashes,
            run_timeout=run.timeout,
            retry=self.retry_defaults,
        )
        return replace(configured, **{k: v for k, v in overrides.items() if v is not None})

    def make_worker(self, options=None, worker_id: str | None = None):
        """A worker over this runtime's store, tasks, client and clock; its tasks get this
        runtime's services (billing, documents, mailer, settings) through `ctx`."""
        from flowjobs.core.worker import Worker

        return Worker(
            self.store,
            self.registry,
            self.client,
            self.clock,
            options or self.worker_options(),
            services=self,
            worker_id=worker_id,
        )

    def duties(self, scheduler: bool = True) -> list:
        """The periodic duties as `(interval, fn, name)`: scheduler tick (unless `scheduler` is
        False), pruner, alerts (when configured)."""
        from flowjobs.core.duties import prune_once

        entries = []
        if scheduler:
            entries.append(
                (self.settings.scheduler.interval, self.scheduler.tick, "scheduler tick")
            )
        store, clock, retention = self.store, self.clock, self.settings.retention
        entries.append((retention.interval, lambda: prune_once(store, clock, retention), "pruner"))
        alerts = self.settings.alerts
        if alerts.email or alerts.webhook_url:
            from flowjobs.ops.alerts import raise_alerts

            entries.append((alerts.interval, lambda: raise_alerts(self), "alerts"))
        return entries

    def run_worker(
        self, options, scheduler: bool = True, on_start=None, warn_queues: bool = True
    ) -> int:
        """Run one worker until it stops, with the periodic duties beside it (`--burst`: one
        scheduler tick first and none after). `on_start(worker)` is called before it runs (to
        install signal handlers). Returns the exit code; raises the scheduler's failure after a
        burst in which a schedule failed to enqueue."""
        from flowjobs.core.duties import Duties

        self.registry  # noqa: B018 - import task modules before the first claim
        if warn_queues:  # a supervisor's children do not: it has said so once for all
            self.warn_unknown_queues(options.queues)
        if scheduler:
            self.scheduler  # noqa: B018 - a bad schedule is refused before a database is made
        worker = self.make_worker(options)
        if on_start:
            on_start(worker)
        if options.burst:
            if scheduler:
                self.scheduler.tick()
            code = worker.run()
            # The first tick met the database away or locked, which the worker then waited out:
            # its slots are enqueued now, and run (the burst did its job: exit 0).
            # (Not after a stop was asked for, nor with --max-jobs used up.)
            left = None if options.max_jobs is None else options.max_jobs - worker.processed
            retried = scheduler and self.scheduler.failures and code == 0
            retried = retried and not worker.stop_requested and (left is None or left > 0)
            if retried and any(result.run_ids for result in self.scheduler.tick()):
                again = self.make_worker(replace(options, max_jobs=left))
                if on_start:
                    on_start(again)
                code = again.run()
            if scheduler:
                from flowjobs.core.scheduler import raise_enqueue_failures

                raise_enqueue_failures(self.scheduler.failures)
            return code
        duties = Duties(self.duties(scheduler))
        duties.start()
        try:
            return worker.run()
        finally:
            duties.stop()

    def warn_unknown_queues(self, queues: list[str]) -> None:
        """A queue no registered task uses is most likely a typo (`webhook` for `webhooks`):
        the worker would take nothing. Said once at start; not refused, since a run triggered
        with `--queue` can be on any queue."""
        import logging

        known = {task.queue for task in self.registry.all()}
        unknown = [q for q in queues if q != "*" and q not in known]
        if unknown:
            logging.getLogger("flowjobs.worker").warning(
                "no registered task uses queue%s %s (their queues: %s); this worker takes only "
                "runs triggered onto %s with --queue",
                "s" if len(unknown) > 1 else "",
                ", ".join(repr(q) for q in unknown),
                ", ".join(sorted(known)),
                "them" if len(unknown) > 1 else "it",
            )

    def run_scheduler(self, on_start=None) -> None:
        """Run the scheduler loop (and the pruner, alerts) until stopped; stops at once when a
        schedule fails to enqueue for a reason other than the database, and then raises it.
        `on_start(stop)` is given the function that stops it (for signal handlers)."""
        import logging

        from flowjobs import __version__
        from flowjobs.core.duties import Duties
        from flowjobs.core.scheduler import is_database_failure, raise_enqueue_failures
        from flowjobs.errors import DatabaseGone
        from flowjobs.store.db import redact

        scheduler = self.scheduler
        logging.getLogger("flowjobs.scheduler").info(
            "flowjobs %s scheduler started on %s: %d schedules, tick every %gs",
            __version__,
            redact(self.db.url),
            len(scheduler.schedules),
            self.settings.scheduler.interval,
        )
        duties = Duties(self.duties(scheduler=False))

        gone: list[DatabaseGone] = []

        def tick():
            try:  # SQLite: the file deleted or replaced under it, it enqueued into the old one
                self.db.ensure_same_file("run-scheduler")
            except DatabaseGone as exc:
                gone.append(exc)
                duties.stop()
                return
            scheduler.tick()
            if any(not is_database_failure(exc) for exc in scheduler.failures.values()):
                duties.stop()

        duties.every(self.settings.scheduler.interval, tick, "scheduler tick")
        if on_start:
            on_start(duties.stop)
        duties.run()
        if gone:
            raise gone[0]
        raise_enqueue_failures(scheduler.failures)

    @cached_property
    def units(self):
        """Units of work over the billing, inbox and outbound tables (`store.units`)."""
        from flowjobs.store.units import Units

        self.store  # noqa: B018 - the schema (job and billing tables) is migrated on first use
        return Units(self.db)

    @cached_property
    def billing(self):
        from flowjobs.adapters.stripe_gateway import StripeGateway
        from flowjobs.billing.service import Billing
        from flowjobs.outbound.emit import OutboundEvents

        billing = Billing(
            self.units,
            self.clock,
            self.client,
            lambda: StripeGateway(self.settings.stripe),
            self.settings.billing,
            outbound=self.settings.webhooks.outbound,
        )
        self.units.hooks.append(OutboundEvents(billing))
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
        if "units" in self.__dict__:
            self.units.dispose()
        if "store" in self.__dict__:
            self.store.close()
        if "db" in self.__dict__:
            self.db.close()
