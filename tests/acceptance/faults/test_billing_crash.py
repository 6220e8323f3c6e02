"""A billing run charges at most once: a worker SIGKILLed right after Stripe charged, and two
executors given the same billing run at once. Real worker processes, both backends."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from sqlmodel import select

from flowjobs.billing.models import BillingRun, Payment
from tests.billing_helpers import get, seed, stripe_sections
from tests.cli_helpers import cli_env, flowjobs, start_worker, wait_until


@pytest.fixture
def live_rt(make_runtime, localstripe_url):
    return make_runtime(pinned=False, **stripe_sections(localstripe_url))


def billing_env(rt, localstripe_url, **extra):
    return cli_env(
        rt.db.url,
        FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_flowjobs",
        FLOWJOBS_STRIPE_API_BASE=localstripe_url,
        FLOWJOBS_WORKER_LEASE="1s",
        FLOWJOBS_WORKER_RESCUE_INTERVAL="100ms",
        **extra,
    )


def billing_job(rt):
    """A seeded customer whose first billing run is due, and its attempt-billing-run queued
    under the key the cron would use."""
    seeded = seed(rt)
    job = rt.trigger(
        "attempt-billing-run",
        {"billingRunId": seeded.billing_run_id},
        idempotency_key=f"attempt-billing-run:{seeded.billing_run_id}",
    )
    return seeded, job


def fault_env(rt, localstripe_url, point: str, marker, **extra):
    """A worker's environment that stops at the fault point `point` (each arrival noted in the
    file `marker`)."""
    return billing_env(
        rt, localstripe_url, FLOWJOBS_FAULT=point, FLOWJOBS_FAULT_FILE=str(marker), **extra
    )


def test_sigkill_after_the_charge_then_a_new_worker_records_it_without_charging_again(
    live_rt, localstripe_url, tmp_path
):
    seeded, job = billing_job(live_rt)
    marker = tmp_path / "fault"
    env = fault_env(live_rt, localstripe_url, "billing-run.after-charge", marker)
    victim = start_worker("--no-scheduler", env=env, stderr_path=tmp_path / "victim.log")
    wait_until(lambda: marker.exists(), message="the worker to charge and reach the fault point")
    assert live_rt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    assert (
        get(live_rt, BillingRun, seeded.billing_run_id).status == "started"
    )  # charged, not recorded

    wait_until(
        lambda: live_rt.store.get_run(job.id)["lease_expires_at"] < time.time() * 1000,
        message="the killed worker's lease to expire",
    )
    survivor = flowjobs(
        "run-worker",
        "--burst",
        "--no-scheduler",
        env=billing_env(live_rt, localstripe_url),
        timeout=120,
    )
    assert survivor.returncode == 0, survivor.stderr

    assert [a["outcome"] for a in live_rt.store.attempts(job.id)] == ["crashed", "succeeded"]
    run = get(live_rt, BillingRun, seeded.billing_run_id)
    assert run.status == "succeeded"
    with live_rt.billing.unit() as s:
        payments = list(
            s.exec(select(Payment).where(Payment.subscription_id == seeded.subscription_id))
        )
    assert [(p.status, p.amount) for p in payments] == [("succeeded", 2500)]
    assert payments[0].stripe_payment_intent_id == run.stripe_payment_intent_id
    assert live_rt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


def test_two_executors_at_once_charge_once(make_runtime, localstripe_url):
    from flowjobs.billing.runs import execute_billing_run

    rts = [make_runtime(**stripe_sections(localstripe_url)) for _ in range(2)]
    seeded = seed(rts[0])
    start = threading.Barrier(2)
    reports = {}

    def execute(i):
        start.wait()
        reports[i] = execute_billing_run(rts[i].billing, seeded.billing_run_id, f"run_executor_{i}")

    threads = [threading.Thread(target=execute, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.action for r in reports.values()) == ["charged", "skipped"]
    assert rts[0].billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


def test_two_worker_processes_given_the_same_billing_run_charge_once(
    live_rt, localstripe_url, tmp_path
):
    seeded = seed(live_rt)
    jobs = [
        live_rt.trigger(
            "attempt-billing-run", {"billingRunId": seeded.billing_run_id}, idempotency_key=key
        )
        for key in ("from-cron", "from-operator")
    ]  # two runs for one billing run
    env = billing_env(live_rt, localstripe_url)
    workers = [
        start_worker("--burst", "--no-scheduler", env=env, stderr_path=tmp_path / f"w{i}.log")
        for i in range(2)
    ]
    for w in workers:
        assert w.wait(120) == 0
    results = sorted(live_rt.store.get_run(j.id)["result"] for j in jobs)
    assert ['"action": "charged"' in r for r in results].count(True) == 1, results
    assert get(live_rt, BillingRun, seeded.billing_run_id).status == "succeeded"
    assert live_rt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


@pytest.mark.parametrize(
    "point",
    ["billing-run.intent-recorded", "billing-run.before-confirm", "billing-run.after-charge"],
)
def test_sigkill_anywhere_then_a_retry_after_stripe_forgot_the_keys_charges_once(
    live_rt, localstripe_url, tmp_path, point
):
    """The retry comes after Stripe's 24 h key window (localstripe's key cache cleared): it finds
    the PaymentIntent by the id recorded before confirmation and never creates a second one."""
    from tests.acceptance.faults.stripe_proxy import forget_idempotency_keys

    seeded, job = billing_job(live_rt)
    marker = tmp_path / "fault"
    env = fault_env(live_rt, localstripe_url, point, marker)
    victim = start_worker("--no-scheduler", env=env, stderr_path=tmp_path / "victim.log")
    wait_until(lambda: marker.exists(), message=f"the worker to reach {point}")
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    before = get(live_rt, BillingRun, seeded.billing_run_id)
    assert (
        before.status == "started" and before.stripe_payment_intent_id is not None
    )  # recorded first
    assert (before.confirm_sent_at is not None) == (point != "billing-run.intent-recorded")
    forget_idempotency_keys(localstripe_url)

    wait_until(
        lambda: live_rt.store.get_run(job.id)["lease_expires_at"] < time.time() * 1000,
        message="the killed worker's lease to expire",
    )
    survivor = flowjobs(
        "run-worker",
        "--burst",
        "--no-scheduler",
        env=billing_env(live_rt, localstripe_url),
        timeout=120,
    )
    assert survivor.returncode == 0, survivor.stderr
    run = get(live_rt, BillingRun, seeded.billing_run_id)
    assert (run.status, run.stripe_payment_intent_id, run.outcome_unknown_since) == (
        "succeeded",
        before.stripe_payment_intent_id,
        None,
    )
    with live_rt.billing.unit() as s:
        payments = list(
            s.exec(select(Payment).where(Payment.subscription_id == seeded.subscription_id))
        )
    assert [(p.status, p.stripe_payment_intent_id) for p in payments] == [
        ("succeeded", run.stripe_payment_intent_id)
    ]
    assert live_rt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}


def test_every_attempt_crashes_then_the_failure_hook_settles_the_billing_run_at_once(
    live_rt, localstripe_url, tmp_path
):
    """attempt-billing-run uses up its crash budget (its worker is killed each time, just before
    confirming); its failure hook settle-billing-run runs at once: Stripe has not charged, so the
    PaymentIntent is canceled and the billing run scheduled again — and charged once by a fresh job."""
    from tests.acceptance.faults import invariants

    seeded, job = billing_job(live_rt)
    marker = tmp_path / "fault"
    crashy = fault_env(
        live_rt,
        localstripe_url,
        "billing-run.before-confirm",
        marker,
        FLOWJOBS_RUN_MAX_CRASHES="2",
    )
    for n in (1, 2):
        victim = start_worker("--no-scheduler", env=crashy, stderr_path=tmp_path / f"victim{n}.log")
        wait_until(
            lambda: marker.exists() and len(marker.read_text().split()) == n,
            message=f"attempt {n} to reach the fault point",
        )
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
        wait_until(
            lambda: live_rt.store.get_run(job.id)["lease_expires_at"] < time.time() * 1000,
            message="the killed worker's lease to expire",
        )
    first_intent = get(live_rt, BillingRun, seeded.billing_run_id).stripe_payment_intent_id
    assert live_rt.billing.gateway.count_charges(False, seeded.stripe_customer) == {}

    healthy = billing_env(
        live_rt, localstripe_url, FLOWJOBS_RUN_MAX_CRASHES="2", FLOWJOBS_BILLING_REQUEUE_AFTER="1s"
    )
    worker = start_worker("--no-scheduler", env=healthy, stderr_path=tmp_path / "healthy.log")
    try:
        wait_until(
            lambda: get(live_rt, BillingRun, seeded.billing_run_id).status == "succeeded",
            timeout=60,
            message="the requeued billing run to be charged",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    assert live_rt.store.get_run(job.id)["status"] == "failed"
    [hook] = [r for r in live_rt.store.list_runs(limit=100) if r["task"] == "settle-billing-run"]
    assert hook["status"] == "completed" and hook["idempotency_key"] == f"on-failure:{job.id}"
    assert '"action": "requeued"' in hook["result"], hook["result"]
    run = get(live_rt, BillingRun, seeded.billing_run_id)
    assert run.requeues == 1 and run.stripe_payment_intent_id != first_intent
    assert live_rt.billing.gateway.retrieve_payment_intent(False, first_intent).status == "canceled"
    with live_rt.billing.unit() as s:
        payments = list(
            s.exec(select(Payment).where(Payment.subscription_id == seeded.subscription_id))
        )
    assert sorted(p.status for p in payments) == ["canceled", "succeeded"]
    assert live_rt.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}
    invariants.check(live_rt.db)
