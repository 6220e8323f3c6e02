"""Built-in tasks, laid out like the seed's trigger/ directory: one task per module.

BUILTIN_MODULES is the explicit list of modules whose tasks are registered.
"""

BUILTIN_MODULES = [
    "flowjobs.tasks.hello_world",
    "flowjobs.tasks.noop",
    "flowjobs.tasks.hourly_cron",
    "flowjobs.tasks.daily_cron",
    "flowjobs.tasks.attempt_billing_runs",
    "flowjobs.tasks.attempt_billing_run",
    "flowjobs.tasks.attempt_transition_billing_periods",
    "flowjobs.tasks.attempt_billing_period_transition",
    "flowjobs.tasks.attempt_cancel_scheduled_subscriptions",
    "flowjobs.tasks.attempt_subscription_cancellation",
    "flowjobs.tasks.fail_stale_payments",
    "flowjobs.tasks.documents",
    "flowjobs.tasks.notifications",
    "flowjobs.tasks.webhook_events",
    "flowjobs.tasks.send_alert",
]
