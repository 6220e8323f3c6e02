"""`flowjobs billing retry BILLING_RUN_ID`: a failed billing run's period is billed again, now,
with the subscription's current card — its scheduled retry charged now, or (no retry left) a new
billing run — and charged once; a paid, succeeded or in-flight one is refused (exit 2), an
unknown one is exit 3. localstripe behind the SDK; the command runs as a subprocess at the
test's pinned time (FLOWJOBS_CLOCK frozen), the worker in-process. Both backends."""

from __future__ import annotations

import pytest

from flowjobs.billing.models import BillingPeriod, BillingRun, Invoice, Subscription
from flowjobs.core.clock import iso
from flowjobs.errors import BadInput
from tests.billing_helpers import DECLINING, VISA, drain, get, runs_of, seed, stripe_sections
from tests.cli_helpers import as_json, cli_env, flowjobs
from tests.integration.test_billing_flow import hourly, switch_to_card


@pytest.fixture
def brt(make_runtime, localstripe_url):
    return make_runtime(billing={"retry_days": [3]}, **stripe_sections(localstripe_url))


def test_a_failed_run_is_retried_now_and_charged_once_never_twice(brt, clock, db_url):
    env = cli_env(db_url, FLOWJOBS_CLOCK=f"{iso(clock.now_ms())} x0 @0")

    def retry(billing_run_id: str, *more: str):
        return flowjobs("billing", "retry", billing_run_id, *more, env=env)

    seeded = seed(brt)
    hourly(brt)
    drain(brt)  # period 1 paid
    switch_to_card(brt, seeded, DECLINING)
    period_end = get(brt, BillingPeriod, seeded.period_id).end_date
    clock.set(int(period_end.timestamp() * 1000) + 60_000)
    env["FLOWJOBS_CLOCK"] = f"{iso(clock.now_ms())} x0 @0"
    hourly(brt)
    drain(brt)  # period 2's run is declined; the ladder schedules attempt 2 in 3 days
    first, ladder = runs_of(brt, seeded.subscription_id)[-2:]
    assert (first.status, ladder.status, ladder.attempt_number) == ("failed", "scheduled", 2)

    # with a scheduled retry, that one is charged now (never a second run waiting)
    done = as_json(retry(first.id, "--json"))
    assert (done["failed"], done["billingRunId"], done["created"]) == (first.id, ladder.id, False)
    assert done["status"] == "queued" and done["runId"].startswith("run_")
    assert get(brt, BillingRun, ladder.id).scheduled_for.timestamp() * 1000 == clock.now_ms()
    drain(brt)  # still the declining card: attempt 2 fails, and the ladder ([3]) is used up
    assert get(brt, BillingRun, ladder.id).status == "failed"
    assert len(runs_of(brt, seeded.subscription_id)) == 3

    # the customer fixes the card; no retry is left, so a new billing run bills the period
    card = switch_to_card(brt, seeded, VISA)
    plain = retry(ladder.id)
    assert plain.returncode == 0, plain.stderr
    new_id = plain.stdout.strip()
    assert new_id.startswith("billing_run_") and new_id != ladder.id
    assert f"billing run {ladder.id} failed" in plain.stderr and new_id in plain.stderr
    again = retry(first.id)  # a second retry meanwhile charges the same waiting run
    assert again.returncode == 0 and again.stdout.strip() == new_id, again.stderr
    new = get(brt, BillingRun, new_id)
    assert (new.status, new.attempt_number, new.payment_method_id) == ("scheduled", 3, card)
    assert new.billing_period_id == first.billing_period_id
    drain(brt)
    assert get(brt, BillingRun, new_id).status == "succeeded"
    assert get(brt, Subscription, seeded.subscription_id).status == "active"
    assert {
        i.status
        for i in _invoices(brt, first.billing_period_id)  # one invoice per period, paid once
    } == {"paid"}
    charges = brt.billing.gateway.count_charges(False, seeded.stripe_customer)
    assert charges == {"succeeded": 2, "failed": 2}  # period 1, period 2 once; two declines

    # paid now: every retry of the period is refused, and nothing more is charged
    for billing_run_id, message in (
        (first.id, f"billing period {first.billing_period_id} is already paid"),
        (ladder.id, "is already paid"),
        (new_id, f"billing run {new_id} is succeeded; only a failed billing run is retried"),
    ):
        refused = retry(billing_run_id)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert refused.stderr.startswith("error: ") and message in refused.stderr
    unknown = retry("billing_run_nope")
    assert unknown.returncode == 3 and "no billing run 'billing_run_nope'" in unknown.stderr
    drain(brt)
    assert brt.billing.gateway.count_charges(False, seeded.stripe_customer) == charges


def test_an_in_flight_or_canceled_run_is_refused(brt, db_url):
    from flowjobs.billing.retry import retry_billing_run
    from flowjobs.billing.runs import _prepare

    charging = seed(brt)
    _prepare(brt.billing, charging.billing_run_id, "run_x")  # claimed: started, not yet charged
    with pytest.raises(BadInput, match="is started; only a failed billing run is retried"):
        retry_billing_run(brt.billing, charging.billing_run_id)
    refused = flowjobs("billing", "retry", charging.billing_run_id, env=cli_env(db_url))
    assert refused.returncode == 2 and refused.stderr == (
        f"error: billing run {charging.billing_run_id} is started; only a failed billing run is "
        "retried (it is being charged now: wait for its outcome)\n"
    )

    declined = seed(brt, card=DECLINING)  # a first payment declined cancels the subscription
    hourly(brt)
    drain(brt)
    assert get(brt, BillingRun, declined.billing_run_id).status == "failed"
    with pytest.raises(BadInput, match="is canceled; its periods are no longer billed"):
        retry_billing_run(brt.billing, declined.billing_run_id)
    assert len(runs_of(brt, declined.subscription_id)) == 1


def _invoices(rt, period_id: str) -> list[Invoice]:
    from sqlmodel import select

    with rt.billing.unit() as s:
        return list(s.exec(select(Invoice).where(Invoice.billing_period_id == period_id)))


def decline_the_second_period(rt, clock):
    """A subscription whose first period is paid and whose second is declined (its retry
    scheduled, if `rt` has a retry ladder); the seeded subscription."""
    seeded = seed(rt)
    hourly(rt)
    drain(rt)
    switch_to_card(rt, seeded, DECLINING)
    clock.set(int(get(rt, BillingPeriod, seeded.period_id).end_date.timestamp() * 1000) + 60_000)
    hourly(rt)
    drain(rt)
    return seeded


def second_period_declined(make_runtime, localstripe_url, clock):
    """As `decline_the_second_period`, with no retry ladder: (runtime, seeded, the failed run)."""
    rt = make_runtime(billing={"retry_days": []}, **stripe_sections(localstripe_url))
    seeded = decline_the_second_period(rt, clock)
    failed = runs_of(rt, seeded.subscription_id)[-1]
    assert failed.status == "failed"
    return rt, seeded, failed


def test_two_retries_at_once_make_one_billing_run(make_runtime, localstripe_url, clock):
    """Two operators retrying the same failed run at the same moment: the period's row is locked
    first (one writer on SQLite), so the second sees the first's new run and charges that one."""
    import threading

    from flowjobs.billing.retry import retry_billing_run

    rt, seeded, failed = second_period_declined(make_runtime, localstripe_url, clock)

    start, results = threading.Barrier(2), []

    def retry():
        start.wait(10)
        results.append(retry_billing_run(rt.billing, failed.id))

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 2
    assert results[0].billing_run == results[1].billing_run
    assert sorted(r.created for r in results) == [False, True]
    assert [r.status for r in runs_of(rt, seeded.subscription_id)[-2:]] == ["failed", "scheduled"]


def test_a_declined_retry_keeps_a_cancellation_scheduled_for_later(
    make_runtime, localstripe_url, clock
):
    """A past-due subscription canceled at period end, then retried and declined again: it stays
    `cancellation_scheduled` (the date kept, the cancellation still withdrawable), not `past_due`
    with a cancellation date nobody could take back."""
    from flowjobs.billing.cancel import cancel, uncancel_subscription
    from flowjobs.billing.retry import retry_billing_run

    rt, seeded, failed = second_period_declined(make_runtime, localstripe_url, clock)
    assert get(rt, Subscription, seeded.subscription_id).status == "past_due"
    assert cancel(rt.billing, seeded.subscription_id)["status"] == "cancellation_scheduled"

    retried = retry_billing_run(rt.billing, failed.id)
    drain(rt)  # declined again
    assert get(rt, BillingRun, retried.billing_run).status == "failed"
    sub = get(rt, Subscription, seeded.subscription_id)
    assert (sub.status, sub.cancel_scheduled_at is not None) == ("cancellation_scheduled", True)
    uncancel_subscription(rt.billing, seeded.subscription_id)
    assert get(rt, Subscription, seeded.subscription_id).cancel_scheduled_at is None


def test_uncanceled_after_its_retry_day_the_dunning_ladder_resumes(brt, clock):
    """A declined period's retry was aborted by a cancellation at period end; un-canceled after
    the retry's day (the card fixed meanwhile), the retry used to be left aborted — only runs
    still in the future were restored — and the period was never collected."""
    from flowjobs.billing.cancel import cancel, uncancel_subscription

    seeded = decline_the_second_period(brt, clock)  # its retry is due in 3 days
    first, retry = runs_of(brt, seeded.subscription_id)[-2:]
    assert (first.status, retry.status) == ("failed", "scheduled")
    assert cancel(brt.billing, seeded.subscription_id)["status"] == "cancellation_scheduled"
    assert get(brt, BillingRun, retry.id).status == "aborted"
    switch_to_card(brt, seeded, VISA)
    clock.advance(4 * 86400)  # past the retry's day
    restored = uncancel_subscription(brt.billing, seeded.subscription_id)
    assert len(restored["billingRuns"]) == 1, restored
    drain(brt)
    last = runs_of(brt, seeded.subscription_id)[-1]
    assert (last.status, last.attempt_number, last.billing_period_id) == (
        "succeeded",
        2,
        first.billing_period_id,
    )
    assert get(brt, Subscription, seeded.subscription_id).status == "active"


def test_a_second_uncancel_does_not_restart_a_spent_dunning_ladder(
    make_runtime, localstripe_url, clock
):
    """The retry restored by an un-cancel declined again and spent the ladder; cancelled and
    un-canceled once more, the first cancellation's aborted retry must not come back."""
    from flowjobs.billing.cancel import cancel, uncancel_subscription

    rt = make_runtime(billing={"retry_days": [3]}, **stripe_sections(localstripe_url))
    seeded = decline_the_second_period(rt, clock)  # its retry due in 3 days
    assert cancel(rt.billing, seeded.subscription_id)["status"] == "cancellation_scheduled"
    clock.advance(4 * 86400)
    assert len(uncancel_subscription(rt.billing, seeded.subscription_id)["billingRuns"]) == 1
    drain(rt)  # the restored retry declines: no attempt left
    assert runs_of(rt, seeded.subscription_id)[-1].status == "failed"
    assert cancel(rt.billing, seeded.subscription_id)["status"] == "cancellation_scheduled"
    assert uncancel_subscription(rt.billing, seeded.subscription_id)["billingRuns"] == []
