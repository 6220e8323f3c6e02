"""Cancelling subscriptions (spec §7.8) as an operator does it — `flowjobs billing cancel` and
`billing uncancel` in a subprocess — and as the jobs do it (the scheduled-cancellation job,
a failed first payment), on both backends: the state changes, the emails through a real SMTP
server, the event rows, and the move onto the organisation's default free plan."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlmodel import select

from flowjobs.billing import setup
from flowjobs.billing.adjust import adjust_subscription
from flowjobs.billing.models import BillingPeriod, BillingRun, Event, Product, Subscription
from flowjobs.billing.types import utc_from_ms
from flowjobs.core.clock import iso, iso_datetime
from tests.billing_helpers import DECLINING, drain, get, seed, stripe_sections
from tests.cli_helpers import cli_env, flowjobs
from tests.integration.test_notifications import mail_sections, smtp  # noqa: F401  (smtp: the aiosmtpd fixture)

CANCELED_MAIL = (
    "Subscription Canceled: Your Pro subscription has been canceled",
    "Subscription Canceled: Ada Lovelace canceled Pro",
)


def world(rt, *, free_plan: bool = True) -> dict:
    """An organisation (one member, and a free default plan), a customer with a card on Pro."""
    now = utc_from_ms(rt.clock.now_ms())
    with rt.billing.unit() as s:
        org = setup.organization(s, "Acme Analytics", currency="USD")
        setup.member(s, org, "owner@acme.example")
        cust = setup.customer(s, org, email="ada@example.com", name="Ada Lovelace", livemode=True)
        method = setup.card(s, cust, stripe_payment_method_id="pm_x")
        pro = setup.plan(s, org, "Pro", 19900, livemode=True)
        if free_plan:
            free = setup.plan(s, org, "Free", 0, livemode=True)
            free.is_default = True
            s.get(Product, free.product_id).default = True
        sub, period, run = setup.subscription(s, cust, pro, method, start=now)
        run.status = "succeeded"  # the first period is paid
        future = BillingPeriod(
            id="billing_period_next",
            livemode=True,
            subscription_id=sub.id,
            start_date=period.end_date,
            end_date=period.end_date + timedelta(days=28),
            status="upcoming",
        )
        s.add(future)
        s.flush()
        s.add(
            BillingRun(
                id="billing_run_next",
                livemode=True,
                billing_period_id=future.id,
                subscription_id=sub.id,
                scheduled_for=future.start_date,
                payment_method_id=method.id,
            )
        )
        cheaper = setup.plan(s, org, "Starter", 4900, livemode=True)
        return {
            "sub": sub.id,
            "price": cheaper.id,
            "customer": cust.id,
            "end": period.end_date,
            "next_run": "billing_run_next",
        }


@pytest.fixture
def crt(make_runtime, clock, smtp):
    clock.set(int(time.time() * 1000))  # the CLI subprocesses run on the real clock
    port, inbox = smtp()
    rt = make_runtime(**mail_sections(port))
    rt.inbox = inbox
    return rt


def catch_up(rt, clock):
    """Run what the commands triggered (due by the real clock) in this process."""
    clock.set(int(time.time() * 1000) + 1000)
    drain(rt)


def subjects(rt) -> list[tuple[str, str]]:
    return sorted((rcpts[0], msg["Subject"]) for rcpts, msg in rt.inbox.messages)


def events(rt, subscription_id: str) -> list[str]:
    with rt.billing.unit() as s:
        return sorted(
            e.type for e in s.exec(select(Event).where(Event.object_id == subscription_id))
        )


def current_subscriptions(rt, customer_id: str) -> list[Subscription]:
    with rt.billing.unit() as s:
        return list(
            s.exec(
                select(Subscription).where(
                    Subscription.customer_id == customer_id, Subscription.status != "canceled"
                )
            )
        )


def test_cancel_at_period_end_uncancel_then_the_job_ends_it_and_moves_the_customer_to_the_free_plan(
    crt, clock, db_url
):
    w = world(crt)
    env = cli_env(db_url)
    done = flowjobs("billing", "cancel", w["sub"], "--reason", "too expensive", env=env)
    assert done.returncode == 0, done.stderr
    assert f"will be canceled at {iso_datetime(w['end'])} (other)" in done.stdout
    sub = get(crt, Subscription, w["sub"])
    assert (sub.status, sub.cancel_scheduled_at, sub.cancellation_reason) == (
        "cancellation_scheduled",
        w["end"],
        "other",
    )
    assert sub.metadata_ == {"cancellationNote": "too expensive"}
    assert (
        get(crt, BillingPeriod, "billing_period_next").status,
        get(crt, BillingRun, w["next_run"]).status,
    ) == ("scheduled_to_cancel", "aborted")
    catch_up(crt, clock)
    day = w["end"].strftime("%B %-d, %Y")
    assert subjects(crt) == [
        (
            "ada@example.com",
            f"Cancellation Scheduled: Your Pro subscription will be canceled on {day}",
        ),
        (
            "owner@acme.example",
            f"Cancellation Scheduled: Ada Lovelace scheduled cancellation for Pro on {day}",
        ),
    ]
    assert events(crt, w["sub"]) == [
        "subscription.created"
    ]  # none for a scheduled cancellation (upstream)

    again = flowjobs("billing", "uncancel", w["sub"], "--json", env=env)
    assert again.returncode == 0, again.stderr
    undone = json.loads(again.stdout)
    assert (undone["status"], undone["cancelScheduledAt"]) == ("active", None)
    assert len(undone["billingRuns"]) == 1  # the aborted run of the next period, scheduled again
    restored = get(crt, BillingRun, undone["billingRuns"][0])
    assert (restored.status, restored.billing_period_id, restored.scheduled_for) == (
        "scheduled",
        "billing_period_next",
        w["end"],
    )
    assert get(crt, BillingPeriod, "billing_period_next").status == "upcoming"
    assert crt.store.list_runs(task="attempt-billing-run")[0]["run_at"] == int(
        w["end"].timestamp() * 1000
    )

    assert flowjobs("billing", "cancel", w["sub"], "--at-period-end", env=env).returncode == 0
    catch_up(crt, clock)  # told while still scheduled (once canceled, it would not be: below)
    clock.set(int((w["end"] + timedelta(minutes=1)).timestamp() * 1000))
    crt.trigger(
        "attempt-cancel-scheduled-subscriptions",
        {
            "startDateISO": iso(int((w["end"] - timedelta(hours=1)).timestamp() * 1000)),
            "endDateISO": iso(clock.now_ms()),
        },
    )
    drain(crt)
    sub = get(crt, Subscription, w["sub"])
    assert (sub.status, sub.canceled_at, sub.cancellation_reason) == (
        "canceled",
        w["end"] + timedelta(minutes=1),
        "customer_request",
    )
    [free] = current_subscriptions(crt, w["customer"])
    assert (free.status, free.is_free_plan, free.do_not_charge, free.name) == (
        "active",
        True,
        True,
        "Free",
    )
    assert events(crt, w["sub"]) == ["subscription.canceled", "subscription.created"]
    assert events(crt, free.id) == ["subscription.created"]
    assert [s for _, s in subjects(crt) if s.startswith("Subscription Canceled")] == list(
        CANCELED_MAIL
    )
    assert (
        len(crt.inbox.messages) == 6
    )  # cancellation scheduled twice (told again after the un-cancel), canceled

    # the job's "already ended" branch: nothing changes, no second email or event
    ended = crt.trigger(
        "attempt-subscription-cancellation", {"subscriptionId": w["sub"]}, idempotency_key="again"
    )
    drain(crt)
    assert json.loads(crt.store.get_run(ended.id)["result"])["result"] == "already ended"
    assert len(crt.inbox.messages) == 6
    assert events(crt, w["sub"]) == ["subscription.canceled", "subscription.created"]
    assert len(current_subscriptions(crt, w["customer"])) == 1


SCHEDULED_TASKS = (
    "send-customer-subscription-cancellation-scheduled-notification",
    "send-organization-subscription-cancellation-scheduled-notification",
)


def scheduled_runs(rt) -> list[dict]:
    """The cancellation-scheduled notification runs: the customer's, then the organisation's."""
    return [run for task in SCHEDULED_TASKS for run in rt.store.list_runs(task=task)]


def test_a_cancellation_withdrawn_before_its_emails_ran_is_not_announced(crt, clock, db_url):
    """`billing cancel --at-period-end`, then `billing uncancel` before any worker ran: the
    uncancel withdraws the two cancellation-scheduled runs in its own transaction (canceled,
    saying why). Cancel, uncancel and cancel again before the worker: one email each, for the
    cancellation that stands (there were two). A cancellation made immediate before the worker
    ran is not announced as scheduled either; the canceled emails go. (Not withdrawn, the
    emails go: the test above.)"""
    w = world(crt)
    env = cli_env(db_url)
    assert flowjobs("billing", "cancel", w["sub"], "--at-period-end", env=env).returncode == 0
    undone = flowjobs("billing", "uncancel", w["sub"], env=env)
    assert undone.returncode == 0, undone.stderr
    catch_up(crt, clock)
    assert crt.inbox.messages == []
    runs = scheduled_runs(crt)
    assert [(r["task"], r["status"], r["error"]) for r in runs] == [
        (t, "canceled", "withdrawn: the subscription was un-canceled") for t in SCHEDULED_TASKS
    ]
    seen = {run["id"] for run in runs}

    for args in (("--at-period-end",), ()):
        assert flowjobs("billing", "cancel", w["sub"], *args, env=env).returncode == 0
        if args:
            assert flowjobs("billing", "uncancel", w["sub"], env=env).returncode == 0
    catch_up(crt, clock)
    told = subjects(crt)  # the customer and the organisation, once each
    assert len(told) == 2 and len({to for to, _ in told}) == 2, told
    assert all("Cancellation Scheduled" in subject for _, subject in told), told
    runs = [r for r in scheduled_runs(crt) if r["id"] not in seen]
    assert sorted((r["task"], r["status"]) for r in runs) == sorted(
        [(t, "canceled") for t in SCHEDULED_TASKS] + [(t, "completed") for t in SCHEDULED_TASKS]
    )
    seen |= {run["id"] for run in runs}
    assert flowjobs("billing", "uncancel", w["sub"], env=env).returncode == 0
    crt.inbox.messages.clear()

    assert flowjobs("billing", "cancel", w["sub"], "--at-period-end", env=env).returncode == 0
    assert flowjobs("billing", "cancel", w["sub"], "--now", env=env).returncode == 0
    catch_up(crt, clock)
    assert [s for _, s in subjects(crt)] == list(CANCELED_MAIL)
    runs = [r for r in scheduled_runs(crt) if r["id"] not in seen]
    assert [(r["task"], r["status"], r["error"]) for r in runs] == [
        (t, "canceled", "withdrawn: the subscription was canceled") for t in SCHEDULED_TASKS
    ]


def test_uncancel_keeps_a_subscription_whose_payment_failed_past_due(crt, db_url):
    """Cancel and un-cancel a `past_due` subscription: it comes back `past_due`, not `active`
    (it came back active with its invoice unpaid, a plan change was then accepted and charged
    as if nothing were owed, and the pending retry charged the old plan on top). A plan change
    is refused while a failed payment is not made good, whatever the status says."""
    w = world(crt)
    with crt.billing.unit() as s:  # as a declined renewal leaves it (billing/outcomes.py)
        sub = s.get(Subscription, w["sub"])
        [first] = s.exec(
            select(BillingRun).where(
                BillingRun.subscription_id == sub.id, BillingRun.id != w["next_run"]
            )
        ).all()
        first.status = "failed"
        sub.status = "past_due"
        declined = (first.id, sub.customer_id, sub.organization_id)
    from tests.billing_helpers import standalone_payment

    standalone_payment(  # the declined charge
        crt,
        customer_id=declined[1],
        organization_id=declined[2],
        number="N-1",
        amount=19900,
        status="failed",
        billing_run_id=declined[0],
    )
    env = cli_env(db_url)
    for args in (("billing", "cancel", w["sub"]), ("billing", "uncancel", w["sub"])):
        done = flowjobs(*args, env=env)
        assert done.returncode == 0, (args, done.stderr)
    assert get(crt, Subscription, w["sub"]).status == "past_due"
    refused = flowjobs("billing", "adjust", w["sub"], "--price", w["price"], env=env)
    assert refused.returncode == 2 and "is past_due" in refused.stderr, refused.stderr
    with crt.billing.unit() as s:  # the state the old un-cancel left
        s.get(Subscription, w["sub"]).status = "active"
    refused = flowjobs("billing", "adjust", w["sub"], "--price", w["price"], env=env)
    assert refused.returncode == 2, refused.stderr
    assert "last charge was declined and no later one was paid" in refused.stderr


def test_what_counts_as_owed_is_the_latest_regular_charge_declined(crt):
    """`repo.owes`, which keeps an un-canceled subscription past_due and refuses plan changes:
    the latest settled regular run decides. A run failed for a rule (no payment made) is passed
    over; a paid adjustment does not pay a declined period; a later regular run paid does."""
    from flowjobs.billing import repo
    from tests.billing_helpers import standalone_payment

    w = world(crt)
    sub = get(crt, Subscription, w["sub"])
    now = utc_from_ms(crt.clock.now_ms())

    def run(status: str, minutes: int, adjustment: bool = False) -> str:
        with crt.billing.unit() as s:
            first = s.exec(select(BillingRun).where(BillingRun.subscription_id == sub.id)).first()
            made = BillingRun(
                id=f"billing_run_{status}_{minutes}",
                livemode=True,
                billing_period_id=first.billing_period_id,
                subscription_id=sub.id,
                scheduled_for=now,
                payment_method_id=first.payment_method_id,
                status=status,
                is_adjustment=adjustment,
                completed_at=now + timedelta(minutes=minutes),
            )
            s.add(made)
            return made.id

    def owes() -> bool:
        with crt.billing.unit() as s:
            return repo.owes(s, sub.id)

    assert not owes()  # its first run was paid
    run("failed", 1)  # a rule failure: no payment made
    assert not owes()
    declined = run("failed", 2)
    standalone_payment(
        crt,
        customer_id=sub.customer_id,
        organization_id=sub.organization_id,
        number="N-1",
        amount=19900,
        status="failed",
        billing_run_id=declined,
    )
    assert owes()
    run("succeeded", 3, adjustment=True)  # a proration paid: not the period
    assert owes()
    run("succeeded", 4)
    assert not owes()


def test_cancel_now_ends_it_at_once_emails_and_moves_the_customer_to_the_free_plan(
    crt, clock, db_url
):
    w = world(crt)
    done = flowjobs("billing", "cancel", w["sub"], "--now", env=cli_env(db_url))
    assert done.returncode == 0, done.stderr
    [free] = current_subscriptions(crt, w["customer"])
    assert f"subscription {w['sub']} canceled at " in done.stdout
    assert f"moved to the default free plan: subscription {free.id}" in done.stdout
    sub = get(crt, Subscription, w["sub"])
    assert (sub.status, sub.cancellation_reason) == ("canceled", "customer_request")
    assert get(crt, BillingRun, w["next_run"]).status == "aborted"
    assert get(crt, BillingPeriod, "billing_period_next").status == "canceled"
    catch_up(crt, clock)
    assert [s for _, s in subjects(crt)] == list(CANCELED_MAIL)
    assert events(crt, w["sub"]) == ["subscription.canceled", "subscription.created"]


def test_without_a_default_plan_the_customer_is_left_without_a_subscription(crt, clock, db_url):
    w = world(crt, free_plan=False)
    done = flowjobs("billing", "cancel", w["sub"], "--now", "--json", env=cli_env(db_url))
    assert json.loads(done.stdout)["movedToSubscriptionId"] is None
    assert current_subscriptions(crt, w["customer"]) == []


def test_wrong_states_and_unknown_ids_are_refused_with_the_current_state(crt, db_url):
    w = world(crt)
    env = cli_env(db_url)

    def refused(*args, code=2):
        result = flowjobs(*args, env=env)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        return result.stderr

    assert f"subscription {w['sub']} is active; only a cancellation_scheduled" in refused(
        "billing", "uncancel", w["sub"]
    )
    assert "--at-period-end or --now, not both" in refused(
        "billing", "cancel", w["sub"], "--now", "--at-period-end"
    )
    assert flowjobs("billing", "cancel", w["sub"], env=env).returncode == 0
    assert "is cancellation_scheduled (on " in refused("billing", "cancel", w["sub"])
    assert (
        flowjobs("billing", "cancel", w["sub"], "--now", env=env).returncode == 0
    )  # scheduled → now is fine
    assert f"subscription {w['sub']} is canceled; there is nothing to cancel" in refused(
        "billing", "cancel", w["sub"], "--now"
    )
    assert "is canceled; only a cancellation_scheduled" in refused("billing", "uncancel", w["sub"])
    [free] = current_subscriptions(crt, w["customer"])
    assert "on a free plan; free plans cannot be canceled at period end" in refused(
        "billing", "cancel", free.id
    )
    database = "flowjobs.db" if db_url.startswith("sqlite") else db_url.rsplit("/", 1)[1]
    for command in ("cancel", "uncancel"):
        message = refused("billing", command, "sub_nope", code=3)
        assert "no subscription 'sub_nope' (looked in database " in message and database in message


def test_cancel_is_refused_while_a_plan_change_is_scheduled_until_it_is_withdrawn(
    crt, clock, db_url
):
    w = world(crt)
    sub = get(crt, Subscription, w["sub"])
    with crt.billing.unit() as s:
        from flowjobs.billing.models import Organization

        starter = setup.plan(
            s, s.get(Organization, sub.organization_id), "Starter", 900, livemode=True
        ).id
    # auto: a decrease waits for the period end (no proration: world() records no payment for the period)
    report = adjust_subscription(crt.billing, w["sub"], price_id=starter, prorate_charge=False)
    assert (report.action, report.timing) == ("scheduled", "at-period-end")
    assert get(crt, Subscription, w["sub"]).scheduled_adjustment_at == w["end"]
    env = cli_env(db_url)
    for args in (("--now",), ()):  # spec §7.8: ValidationError; here exit 2 naming the state
        refused = flowjobs("billing", "cancel", w["sub"], *args, env=env)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr
        assert (
            f"subscription {w['sub']} is active with a plan change scheduled for {iso_datetime(w['end'])}; "
            f"withdraw it first (billing adjust --price {sub.price_id}"
        ) in refused.stderr
    after = get(crt, Subscription, w["sub"])
    assert (
        after.status,
        after.canceled_at,
        after.cancel_scheduled_at,
        after.scheduled_adjustment_at,
    ) == ("active", None, None, w["end"])
    assert get(crt, BillingRun, w["next_run"]).status == "scheduled"
    assert [c.id for c in current_subscriptions(crt, w["customer"])] == [
        w["sub"]
    ]  # not moved to the free plan
    catch_up(crt, clock)
    assert not [m for m in subjects(crt) if "Cancel" in m[1]]

    # asking for the current price withdraws the change; then --now cancels
    assert adjust_subscription(crt.billing, w["sub"], price_id=sub.price_id).action == "unscheduled"
    done = flowjobs("billing", "cancel", w["sub"], "--now", env=env)
    assert done.returncode == 0, done.stderr
    assert get(crt, Subscription, w["sub"]).status == "canceled"


def test_a_failed_first_payment_cancels_and_moves_the_customer_to_the_free_plan(
    make_runtime, localstripe_url
):
    rt = make_runtime(**stripe_sections(localstripe_url))
    seeded = seed(rt, card=DECLINING)
    with rt.billing.unit() as s:
        from flowjobs.billing.models import Organization

        free = setup.plan(s, s.get(Organization, seeded.org_id), "Free", 0)
        s.get(Product, free.product_id).default = True
    rt.trigger("attempt-billing-run", {"billingRunId": seeded.billing_run_id})
    drain(rt)
    sub = get(rt, Subscription, seeded.subscription_id)
    assert (sub.status, sub.cancellation_reason) == ("canceled", "non_payment")
    [moved] = current_subscriptions(rt, seeded.customer_id)
    assert (moved.status, moved.price_id, moved.is_free_plan) == ("active", free.id, True)
    assert events(rt, moved.id) == ["subscription.created"]


def test_a_free_plan_subscription_is_not_changed_to_a_paid_plan(crt):
    """The default free plan's subscription is never charged (`do_not_charge`): changed to a
    paid price it took the paid plan's name with items priced 0, and billed nothing for ever."""
    from flowjobs.billing.adjust import AdjustmentRefused
    from flowjobs.billing.cancel import cancel

    w = world(crt)
    moved = cancel(crt.billing, w["sub"], now=True)["movedToSubscriptionId"]
    assert moved is not None
    with pytest.raises(AdjustmentRefused, match="is on a free plan and is never charged"):
        adjust_subscription(crt.billing, moved, price_id=w["price"], quantity=2)
    free = get(crt, Subscription, moved)
    assert (free.name, free.is_free_plan) == ("Free", True)
