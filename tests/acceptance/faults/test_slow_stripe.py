"""Fault: Stripe answers later than the client's timeout (issue 12, item 9), on SQLite and
PostgreSQL, with a real worker, the official SDK, a real slow HTTP proxy on loopback and
localstripe behind it.

Stripe *acts* on every request (the proxy forwards it at once) but its answers to the charge
confirmations come after the client gave up, then for a while every answer is late, and Stripe
forgets its idempotency keys (as after 24 hours) before it is fast again. Every billing run
must settle `succeeded` with exactly one charge; the lost answers are reported as unknown
outcomes (not as an unreachable Stripe) and recorded on the billing runs; the retries wait
minutes, not seconds. Before the fix each job failed after its attempts with "cannot reach
Stripe … (connection failed)" and the billing runs were left `started`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from flowjobs.billing.models import BillingRun, Payment
from flowjobs.tasks.attempt_billing_run import CHARGE_RETRY
from tests.acceptance.faults import invariants
from tests.acceptance.faults.stripe_proxy import StripeProxy, forget_idempotency_keys
from tests.billing_helpers import drain, seed, stripe_sections

CONFIRM = r"^/v1/payment_intents/\w+/confirm"
RUNS = 3


@pytest.fixture
def proxy(localstripe_url):
    with StripeProxy(localstripe_url) as p:
        yield p


def billing_rows(rt, ids):
    with rt.billing.unit() as s:
        runs = {r.id: r for r in s.exec(select(BillingRun).where(BillingRun.id.in_(ids)))}
        payments = list(s.exec(select(Payment).where(Payment.billing_run_id.in_(ids))))
    return runs, payments


def due_all(rt, clock, jobs):
    """Move the pinned clock to when every retrying job is due again; returns the wait (s)."""
    waits = []
    for job in jobs:
        row = rt.store.get_run(job.id)
        if row["status"] == "retrying":
            waits.append((row["run_at"] - clock.now_ms()) / 1000)
    clock.set(clock.now_ms() + int(max(waits) * 1000) + 1)
    return min(waits)


def test_stripe_slower_than_the_client_timeout_every_billing_run_settles_charged_once(
    make_runtime, localstripe_url, proxy, clock
):
    sections = stripe_sections(proxy.url)
    sections["stripe"].update({"timeout": "1s", "max_retries": 2})
    rt = make_runtime(**sections)
    seeded = [seed(rt, unit_price=1000 + i) for i in range(RUNS)]
    ids = [s.billing_run_id for s in seeded]
    jobs = [
        rt.trigger(
            "attempt-billing-run", {"billingRunId": i}, idempotency_key=f"attempt-billing-run:{i}"
        )
        for i in ids
    ]

    # 1. Stripe charges, but its answer to each confirmation comes after the client gave up.
    proxy.set(("POST", CONFIRM, "hold"))
    drain(rt)
    assert proxy.count("POST", CONFIRM) == RUNS  # a lost answer is not retried in the call
    for s in seeded:
        assert rt.billing.gateway.count_charges(False, s.stripe_customer) == {"succeeded": 1}
    runs, payments = billing_rows(rt, ids)
    assert {r.status for r in runs.values()} == {"started"}
    assert all(
        r.confirm_sent_at is not None and r.outcome_unknown_since is not None for r in runs.values()
    )
    for job in jobs:
        row = rt.store.get_run(job.id)
        assert row["status"] == "retrying", row
        assert "outcome is unknown" in row["error"] and "cannot reach" not in row["error"], row[
            "error"
        ]
    assert due_all(rt, clock, jobs) >= CHARGE_RETRY.min_wait  # a slow provider is given time

    # 2. Now every answer is late, and Stripe forgets its idempotency keys meanwhile.
    proxy.set(("*", r"^/v1/", "hold"))
    drain(rt)
    assert all(rt.store.get_run(j.id)["status"] == "retrying" for j in jobs)
    forget_idempotency_keys(localstripe_url)
    due_all(rt, clock, jobs)

    # 3. Stripe is fast again: the next attempts ask it first and record what it did.
    proxy.set()
    proxy.release()
    confirms_before = proxy.count("POST", CONFIRM)
    drain(rt)
    assert proxy.count("POST", CONFIRM) == confirms_before  # reconciled, never confirmed again
    assert [rt.store.get_run(j.id)["status"] for j in jobs] == ["completed"] * RUNS
    runs, payments = billing_rows(rt, ids)
    assert {r.status for r in runs.values()} == {"succeeded"}
    assert all(r.outcome_unknown_since is None for r in runs.values())
    assert sorted((p.billing_run_id, p.status) for p in payments) == sorted(
        (i, "succeeded") for i in ids
    )
    for s in seeded:
        assert rt.billing.gateway.count_charges(False, s.stripe_customer) == {"succeeded": 1}
    invariants.check(rt.db)


def test_an_unreachable_stripe_is_told_apart_from_a_slow_one(make_runtime, localstripe_url, clock):
    import socket

    with socket.socket() as probe:  # a port nobody listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    rt = make_runtime(**stripe_sections(localstripe_url))
    seeded = seed(rt)
    down = make_runtime(**stripe_sections(closed))
    job = down.trigger("attempt-billing-run", {"billingRunId": seeded.billing_run_id})
    drain(down)
    row = down.store.get_run(job.id)
    assert row["status"] == "retrying" and "cannot reach Stripe" in row["error"], row
    assert "outcome is unknown" not in row["error"]
    with rt.billing.unit() as s:
        run = s.get(BillingRun, seeded.billing_run_id)
    assert run.outcome_unknown_since is None and run.confirm_sent_at is None  # nothing was sent


def test_the_charge_retries_outlast_a_slow_provider():
    from flowjobs.core.retry import RetryPolicy

    calm = RetryPolicy(**{**CHARGE_RETRY.__dict__, "randomize": False})
    waits = [calm.delay_after(n) for n in range(1, CHARGE_RETRY.max_attempts)]
    assert waits[0] >= 30 and sum(waits) >= timedelta(minutes=20).total_seconds()
