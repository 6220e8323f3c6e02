"""Flowglad's billing model and engine: tables, money and period rules, billing runs,
rollover, cancellation and stale payments. Knows nothing about the CLI; reached from tasks
through `runtime.billing` (a `flowjobs.billing.service.Billing`)."""
