"""Outbound event webhooks to merchants (issue 16 §3, docs/webhooks.md "Outbound webhooks").

Upstream hands each Flowglad event to Svix; flowjobs delivers it itself, as a job:
models (endpoints, delivery records), signing (Standard Webhooks), emit (events written by
billing become deliveries), dispatch (one delivery run per matching endpoint), deliver (one
HTTP attempt), retry (the back-off schedule), endpoints (the `flowjobs endpoints` service).
"""
