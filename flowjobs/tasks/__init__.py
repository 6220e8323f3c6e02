"""Built-in tasks, laid out like the seed's trigger/ directory: one task per module.

BUILTIN_MODULES is the explicit list of modules whose tasks are registered.
"""

from __future__ import annotations

BUILTIN_MODULES = [
    "flowjobs.tasks.hello_world",
    "flowjobs.tasks.noop",
    "flowjobs.tasks.hourly_cron",
    "flowjobs.tasks.daily_cron",
    "flowjobs.tasks.attempt_billing_runs",
    "flowjobs.tasks.attempt_billing_run",
    "flowjobs.tasks.settle_billing_run",
    "flowjobs.tasks.attempt_transition_billing_periods",
    "flowjobs.tasks.attempt_billing_period_transition",
    "flowjobs.tasks.attempt_cancel_scheduled_subscriptions",
    "flowjobs.tasks.attempt_subscription_cancellation",
    "flowjobs.tasks.fail_stale_payments",
    "flowjobs.tasks.documents",
    "flowjobs.tasks.notifications",
    "flowjobs.tasks.webhook_events",
    "flowjobs.tasks.deliver_event_webhook",
    "flowjobs.tasks.send_alert",
]


def load_builtin_for(registry, task_id: str) -> None:
    """Load the built-in module that declares `task_id` into `registry`: the module named after
    it when there is one (`noop` -> flowjobs.tasks.noop), otherwise all of them."""
    module = "flowjobs.tasks." + task_id.replace("-", "_")
    if module in BUILTIN_MODULES:
        registry.load([module])
    if task_id not in registry:
        registry.load(BUILTIN_MODULES)
