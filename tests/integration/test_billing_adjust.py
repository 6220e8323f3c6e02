"""Plan changes with proration (spec §7.7, flowjobs.billing.adjust) against localstripe through the
official SDK, on SQLite and PostgreSQL: upgrades charged once before the items change, downgrades
scheduled and applied at rollover, a declined proration keeping the old plan, the CLI, and a
worker SIGKILLed between the charge and the item swap."""

from __future__ import annotations

import json
import signal
import time
from datetime import timedelta
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from flowjobs.billing import setup, views
from flowjobs.billing.adjust import PRORATION_ITEM, AdjustmentRefused, adjust_subscription
from flowjobs.billing.models import (
    BillingPeriod,
    BillingPeriodItem,
    BillingRun,
    Invoice,
    Payment,
    Subscription,
    SubscriptionItem,
)
from flowjobs.billing.runs import execute_billing_run
from flowjobs.billing.types import utc_from_ms
from flowjobs.core.clock import iso, iso_datetime
from tests.billing_helpers import DECLINING, drain, get, seed, stripe_sections, utc
from tests.cli_helpers import cli_env, flowjobs, start_worker, wait_until

ADJUSTED = (
    "send-customer-subscription-adjusted-notification",
    "send-organization-subscription-adjusted-notification",
)
START = utc(2027, 1, 31, 10)
END = utc(2027, 2, 28, 10)  # 28 days


@pytest.fixture
def brt(make_runtime, localstripe_url):
    return make_runtime(**stripe_sections(localstripe_url))


def at(clock, moment):
    clock.set(int(moment.timestamp() * 1000))


def new_price(rt, org_id: str, name: str, unit_price: int) -> str:
    from flowjobs.billing.models import Organization

    with rt.billing.unit() as s:
        return setup.plan(s, s.get(Organization, org_id), name, unit_price).id


def paid_subscription(rt, clock, unit_price=1200, card=None):
    """A monthly subscription started at START whose first period is charged (in process)."""
    at(clock, START)
    seeded = seed(rt, unit_price=unit_price, **({"card": card} if card else {}))
    report = execute_billing_run(rt.billing, seeded.billing_run_id, "job_first")
    assert report.action == "charged", report
    return seeded


def charges(rt, customer) -> list[tuple[str, int]]:
    client = rt.billing.gateway.client(False)
    data = rt.billing.gateway.call(
        client.v1.charges.list, params={"customer": customer, "limit": 100}
    ).data
    return sorted((c.status, c.amount) for c in data)


def items_of(rt, sub_id) -> list[SubscriptionItem]:
    with rt.billing.unit() as s:
        return list(
            s.exec(
                select(SubscriptionItem)
                .where(SubscriptionItem.subscription_id == sub_id)
                .order_by(SubscriptionItem.added_date, SubscriptionItem.id)
            )
        )


def active_prices(rt, sub_id, moment) -> list[tuple[str, int, int]]:
    from flowjobs.billing.adjust import current_items

    with rt.billing.unit() as s:
        return [(i.price_id, i.unit_price, i.quantity) for i in current_items(s, sub_id, moment)]


def tasks_named(rt, task):
    return [r for r in rt.store.list_runs(limit=1000) if r["task"] == task]


def hand_net(offset: timedelta, old: int, new: int, paid: int) -> int:
    f = Fraction(int(offset.total_seconds() * 1000), int((END - START).total_seconds() * 1000))
    rnd = lambda x: int((x + Fraction(1, 2)) // 1)  # noqa: E731  (Math.round)
    # the spec's parts, their sum never above the higher plan (billing/proration.py)
    return max(min(rnd(old * f) + rnd(new * (1 - f)), max(old, new)) - paid, 0)


# -- hypothesis over adjustment instants and prices, real charges -----------------------------------


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offset_ms=st.integers(min_value=0, max_value=28 * 86_400_000 - 1),
    old=st.integers(min_value=100, max_value=50_000),
    new=st.integers(min_value=0, max_value=50_000),
    quantity=st.integers(min_value=1, max_value=3),
)
def test_adjustment_charges_the_hand_formula_once_and_a_second_identical_one_nothing(
    brt, clock, offset_ms, old, new, quantity
):
    seeded = paid_subscription(brt, clock, unit_price=old)
    price = new_price(brt, seeded.org_id, "Next", new)
    moment = START + timedelta(milliseconds=offset_ms)
    at(clock, moment)
    report = adjust_subscription(
        brt.billing, seeded.subscription_id, price_id=price, quantity=quantity, timing="immediately"
    )
    expected = hand_net(moment - START, old, new * quantity, old)
    assert report.proration.net == expected >= 0
    if expected > 0:
        assert report.action == "charging"
        assert (
            active_prices(brt, seeded.subscription_id, moment)[0][1] == old
        )  # not swapped before payment
        assert (
            execute_billing_run(brt.billing, report.billing_run_id, "job_adjust").action
            == "charged"
        )
    else:
        assert report.action == "applied" and report.billing_run_id is None
    assert active_prices(brt, seeded.subscription_id, moment) == [(price, new, quantity)]
    again = adjust_subscription(
        brt.billing, seeded.subscription_id, price_id=price, quantity=quantity, timing="immediately"
    )
    assert (again.action, again.billing_run_id) == ("unchanged", None)
    paid = [
        amount for status, amount in charges(brt, seeded.stripe_customer) if status == "succeeded"
    ]
    assert sorted(paid) == sorted([old] + ([expected] if expected else []))


# -- end to end through workers ------------------------------------------------------------------


def test_upgrade_mid_period_is_charged_once_before_the_items_change(brt, clock):
    seeded = paid_subscription(brt, clock, unit_price=1200)
    pro = new_price(brt, seeded.org_id, "Pro", 4900)
    at(clock, START + timedelta(days=14))
    report = adjust_subscription(
        brt.billing, seeded.subscription_id, price_id=pro
    )  # auto: increase → now
    assert (report.action, report.timing, report.adjustment_type) == (
        "charging",
        "immediately",
        "upgrade",
    )
    assert report.proration.net == 600 + 2450 - 1200
    # Not swapped until the payment succeeds.
    assert active_prices(brt, seeded.subscription_id, START + timedelta(days=14))[0][1] == 1200
    with pytest.raises(AdjustmentRefused, match="still scheduled"):
        adjust_subscription(brt.billing, seeded.subscription_id, price_id=pro)

    brt.trigger(
        "hourly-cron", {"timestamp": iso(clock.now_ms()), "scheduleId": "hourly-cron"}
    )  # fan-out too
    drain(brt)
    run = get(brt, BillingRun, report.billing_run_id)
    assert (run.status, run.is_adjustment) == ("succeeded", True)
    assert charges(brt, seeded.stripe_customer) == [("succeeded", 1200), ("succeeded", 1850)]
    with brt.billing.unit() as s:
        payment = s.exec(select(Payment).where(Payment.billing_run_id == run.id)).one()
        invoice = s.get(Invoice, payment.invoice_id)
        period_items = list(
            s.exec(
                select(BillingPeriodItem).where(
                    BillingPeriodItem.billing_period_id == seeded.period_id
                )
            )
        )
    assert (payment.status, payment.amount) == ("succeeded", 1850)
    assert (
        invoice.status == "paid" and invoice.subtotal == 1850
    )  # its own invoice, the proration only
    assert sorted((i.name, i.unit_price) for i in period_items) == [
        ("Pro", 1200),
        (PRORATION_ITEM, 1850),
    ]
    sub = get(brt, Subscription, seeded.subscription_id)
    assert (sub.price_id, sub.name, sub.status) == (pro, "Pro", "active")
    assert active_prices(brt, seeded.subscription_id, START + timedelta(days=14)) == [
        (pro, 4900, 1)
    ]
    [adjusted] = tasks_named(brt, "send-customer-subscription-adjusted-notification")
    payload = json.loads(adjusted["payload"])
    assert (payload["prorationAmount"], payload["adjustmentType"]) == (1850, "upgrade")
    assert len(tasks_named(brt, "send-organization-subscription-adjusted-notification")) == 1

    # The next period bills the new plan, and the proration is never billed again.
    at(clock, END + timedelta(minutes=5))
    brt.trigger(
        "hourly-cron",
        {
            "timestamp": iso(clock.now_ms()),
            "scheduleId": "hourly-cron",
            "lastTimestamp": iso(clock.now_ms() - 3_600_000),
        },
    )
    drain(brt)
    assert charges(brt, seeded.stripe_customer) == [
        ("succeeded", 1200),
        ("succeeded", 1850),
        ("succeeded", 4900),
    ]
    assert get(brt, BillingPeriod, seeded.period_id).status == "completed"


def test_downgrade_is_scheduled_for_period_end_and_applied_by_the_rollover(brt, clock):
    seeded = paid_subscription(brt, clock, unit_price=4900)
    starter = new_price(brt, seeded.org_id, "Starter", 1200)
    at(clock, START + timedelta(days=10))
    report = adjust_subscription(
        brt.billing, seeded.subscription_id, price_id=starter
    )  # auto: decrease → end
    assert (report.action, report.timing, report.proration.net) == ("scheduled", "at-period-end", 0)
    sub = get(brt, Subscription, seeded.subscription_id)
    assert sub.scheduled_adjustment_at == END and sub.name == "Pro"
    assert active_prices(brt, seeded.subscription_id, START + timedelta(days=10))[0][1] == 4900
    again = adjust_subscription(brt.billing, seeded.subscription_id, price_id=starter)
    assert (again.action, again.detail) == (
        "unchanged",
        f"this change is already scheduled for {iso_datetime(END)}; nothing to do",
    )  # asked twice: scheduled once, announced once

    at(clock, END + timedelta(minutes=5))
    brt.trigger(
        "hourly-cron",
        {
            "timestamp": iso(clock.now_ms()),
            "scheduleId": "hourly-cron",
            "lastTimestamp": iso(clock.now_ms() - 3_600_000),
        },
    )
    drain(brt)
    sub = get(brt, Subscription, seeded.subscription_id)
    assert (sub.scheduled_adjustment_at, sub.price_id, sub.name, sub.status) == (
        None,
        starter,
        "Starter",
        "active",
    )
    with brt.billing.unit() as s:
        new_period = s.exec(
            select(BillingPeriod).where(
                BillingPeriod.subscription_id == sub.id, BillingPeriod.start_date == END
            )
        ).one()
        items = [
            (i.name, i.unit_price)
            for i in s.exec(
                select(BillingPeriodItem).where(
                    BillingPeriodItem.billing_period_id == new_period.id
                )
            )
        ]
    assert items == [("Starter", 1200)]
    assert charges(brt, seeded.stripe_customer) == [
        ("succeeded", 1200),
        ("succeeded", 4900),
    ]  # never refunded
    assert len(tasks_named(brt, "send-customer-subscription-adjusted-notification")) == 1


def test_a_scheduled_change_replaced_by_another_is_announced_once_and_for_what_stands(brt, clock):
    """A downgrade scheduled for the period's end, replaced by another downgrade to another
    plan: the second is scheduled (it used to fail: its notification had the first one's key
    with another payload), and only what stands is announced. Told before the worker ran, the
    first announcement is withdrawn; told after, the second goes out beside it. Asking for the
    current plan withdraws an announcement not yet sent."""
    seeded = paid_subscription(brt, clock, unit_price=4900)
    sub_id = seeded.subscription_id
    starter = new_price(brt, seeded.org_id, "Starter", 1200)
    basic = new_price(brt, seeded.org_id, "Basic", 900)
    current = get(brt, Subscription, sub_id).price_id
    customer, organization = ADJUSTED

    def announced(status: str) -> list[int]:
        return sorted(
            json.loads(r["payload"])["newItems"][0]["unitPrice"]
            for r in tasks_named(brt, customer)
            if r["status"] == status
        )

    at(clock, START + timedelta(days=7))
    assert adjust_subscription(brt.billing, sub_id, price_id=starter).action == "scheduled"
    replaced = adjust_subscription(brt.billing, sub_id, price_id=basic)
    assert (replaced.action, replaced.extra["replaced"]) == ("scheduled", iso_datetime(END))
    drain(brt)
    assert (announced("completed"), announced("canceled")) == ([900], [1200])
    assert [r["error"] for r in tasks_named(brt, organization) if r["status"] == "canceled"] == [
        "withdrawn: the change was replaced"
    ]

    at(clock, START + timedelta(days=8))  # told already: the new one is told as well
    assert adjust_subscription(brt.billing, sub_id, price_id=starter).action == "scheduled"
    drain(brt)
    assert announced("completed") == [900, 1200]

    withdrawn = adjust_subscription(brt.billing, sub_id, price_id=basic)
    assert withdrawn.action == "scheduled"
    assert adjust_subscription(brt.billing, sub_id, price_id=current).action == "unscheduled"
    drain(brt)
    assert announced("completed") == [900, 1200] and announced("canceled") == [900, 1200]
    assert get(brt, Subscription, sub_id).scheduled_adjustment_at is None


def test_declined_proration_keeps_the_old_plan_and_tells_the_customer(brt, clock):
    seeded = paid_subscription(brt, clock, unit_price=1200)
    with brt.billing.unit() as s:  # the card on file now declines off-session charges
        from flowjobs.billing.models import Customer

        pm = brt.billing.gateway.attach_card(
            False, customer=seeded.stripe_customer, number=DECLINING
        )
        method = setup.card(
            s, s.get(Customer, seeded.customer_id), stripe_payment_method_id=pm[0], last4=pm[1]
        )
        s.get(Subscription, seeded.subscription_id).default_payment_method_id = method.id
    old_price = get(brt, Subscription, seeded.subscription_id).price_id
    pro = new_price(brt, seeded.org_id, "Pro", 4900)
    at(clock, START + timedelta(days=7))
    report = adjust_subscription(
        brt.billing, seeded.subscription_id, price_id=pro, timing="immediately"
    )
    assert report.action == "charging"
    drain(brt)
    run = get(brt, BillingRun, report.billing_run_id)
    assert run.status == "failed"
    sub = get(brt, Subscription, seeded.subscription_id)
    assert (sub.status, sub.price_id) == ("active", old_price)
    assert active_prices(brt, seeded.subscription_id, START + timedelta(days=7))[0][1] == 1200
    assert pro not in [i.price_id for i in items_of(brt, sub.id)]
    with brt.billing.unit() as s:
        payment = s.exec(select(Payment).where(Payment.billing_run_id == run.id)).one()
        invoice = s.get(Invoice, payment.invoice_id)
        names = [
            i.name
            for i in s.exec(
                select(BillingPeriodItem).where(
                    BillingPeriodItem.billing_period_id == seeded.period_id
                )
            )
        ]
    assert payment.status == "failed" and invoice.status == "void"
    assert names == ["Pro"]  # the proration item left the period
    [failed] = tasks_named(brt, "send-customer-payment-failed-notification")
    assert json.loads(failed["payload"]) == {"paymentId": payment.id, "retryDate": None}
    assert tasks_named(brt, "send-customer-subscription-adjusted-notification") == []
    assert len([r for r in tasks_named(brt, "attempt-billing-run")]) == 1  # no retry ladder
    assert get(brt, BillingPeriod, seeded.period_id).status == "active"
    assert charges(brt, seeded.stripe_customer) == [
        ("failed", 300 + 3675 - 1200),
        ("succeeded", 1200),
    ]


def test_no_prorate_swaps_at_once_without_a_charge(brt, clock):
    seeded = paid_subscription(brt, clock, unit_price=1200)
    team = new_price(brt, seeded.org_id, "Team", 19900)
    at(clock, START + timedelta(days=3))
    report = adjust_subscription(
        brt.billing, seeded.subscription_id, price_id=team, quantity=2, prorate_charge=False
    )
    assert (report.action, report.billing_run_id) == ("applied", None)
    assert active_prices(brt, seeded.subscription_id, START + timedelta(days=3)) == [
        (team, 19900, 2)
    ]
    assert get(brt, Subscription, seeded.subscription_id).name == "Team"
    [adjusted] = tasks_named(brt, "send-customer-subscription-adjusted-notification")
    assert json.loads(adjusted["payload"])["prorationAmount"] is None


# -- CLI ---------------------------------------------------------------------------------------------


def _env(rt, localstripe_url, **extra):
    return cli_env(
        rt.db.url,
        FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_flowjobs",
        FLOWJOBS_STRIPE_API_BASE=localstripe_url,
        **extra,
    )


def test_cli_dry_run_prints_the_arithmetic_and_changes_nothing_and_bad_input_exits(
    make_runtime, localstripe_url
):
    rt = make_runtime(pinned=False, **stripe_sections(localstripe_url))
    now = utc_from_ms(rt.clock.now_ms())
    seeded = seed(rt, unit_price=1200, start=now - timedelta(days=10))
    assert execute_billing_run(rt.billing, seeded.billing_run_id, "job_first").action == "charged"
    pro = new_price(rt, seeded.org_id, "Pro", 4900)
    env = _env(rt, localstripe_url)

    out = flowjobs(
        "billing", "adjust", seeded.subscription_id, "--price", pro, "--dry-run", env=env
    )
    assert out.returncode == 0, out.stderr
    assert "fraction through the period" in out.stdout and "net charge:" in out.stdout
    assert (
        "$12.00" in out.stdout and "$49.00" in out.stdout and "already paid: $12.00" in out.stdout
    )
    assert "dry-run: nothing changed" in out.stdout
    js = flowjobs(
        "billing", "adjust", seeded.subscription_id, "--price", pro, "--dry-run", "--json", env=env
    )
    data = json.loads(js.stdout)
    assert data["action"] == "dry-run" and data["proration"]["alreadyPaid"] == 1200
    assert (
        data["proration"]["net"]
        == data["proration"]["oldPart"] + data["proration"]["newPart"] - 1200
    )
    assert items_of(rt, seeded.subscription_id)[0].expired_at is None
    assert [r.id for r in _runs(rt, seeded.subscription_id)] == [seeded.billing_run_id]

    # to the price it already has: no change, so neither a "downgrade" nor any arithmetic
    ((current, _, _),) = active_prices(rt, seeded.subscription_id, now)
    same = flowjobs(
        "billing", "adjust", seeded.subscription_id, "--price", current, "--dry-run", env=env
    )
    assert same.returncode == 0, same.stderr
    assert same.stdout == "unchanged: the subscription already has these items; nothing to do\n"
    same_json = json.loads(
        flowjobs(
            "billing", "adjust", seeded.subscription_id, "--price", current, "--json", env=env
        ).stdout
    )
    assert (same_json["action"], same_json["adjustmentType"]) == ("unchanged", "none")

    unbilled = seed(
        rt, unit_price=1200, start=now - timedelta(days=1)
    )  # its first run not charged yet
    early = flowjobs("billing", "adjust", unbilled.subscription_id, "--price", pro, env=env)
    assert (
        early.returncode == 2
        and f"billing run {unbilled.billing_run_id} for this period is still scheduled"
        in early.stderr
    )

    missing = flowjobs("billing", "adjust", "sub_nope", "--price", pro, env=env)
    assert missing.returncode == 3
    assert missing.stderr.startswith("error: no subscription 'sub_nope' (looked in ")
    assert len(missing.stderr.strip().splitlines()) == 1  # one line, naming the database
    bad = flowjobs(
        "billing", "adjust", seeded.subscription_id, "--price", pro, "--timing", "soon", env=env
    )
    assert bad.returncode == 2 and "--timing must be one of" in bad.stderr
    with rt.billing.unit() as s:
        s.get(Subscription, seeded.subscription_id).status = "canceled"
    gone = flowjobs("billing", "adjust", seeded.subscription_id, "--price", pro, env=env)
    assert (
        gone.returncode == 2 and "is canceled" in gone.stderr and len(gone.stderr.splitlines()) == 1
    )


def _runs(rt, sub_id):
    with rt.billing.unit() as s:
        return list(s.exec(select(BillingRun).where(BillingRun.subscription_id == sub_id)))


# -- SIGKILL between the charge and the item swap ------------------------------------------------------


def test_sigkill_between_charge_and_item_swap_charges_once_and_swaps_once(
    make_runtime, localstripe_url, tmp_path
):
    rt = make_runtime(pinned=False, **stripe_sections(localstripe_url))
    now = utc_from_ms(rt.clock.now_ms())
    seeded = seed(rt, unit_price=1200, start=now - timedelta(days=10))
    assert execute_billing_run(rt.billing, seeded.billing_run_id, "job_first").action == "charged"
    pro = new_price(rt, seeded.org_id, "Pro", 4900)
    report = adjust_subscription(rt.billing, seeded.subscription_id, price_id=pro)
    assert report.action == "charging" and report.proration.net > 0
    [job] = tasks_named(rt, "attempt-billing-run")

    marker = tmp_path / "fault"
    env = _env(
        rt, localstripe_url, FLOWJOBS_WORKER_LEASE="1s", FLOWJOBS_WORKER_RESCUE_INTERVAL="100ms"
    )
    victim = start_worker(
        "--no-scheduler",
        env={
            **env,
            "FLOWJOBS_FAULT": "billing-run.after-charge",
            "FLOWJOBS_FAULT_FILE": str(marker),
        },
        stderr_path=tmp_path / "victim.log",
    )
    wait_until(
        lambda: marker.exists(),
        message="the worker to charge the proration and reach the fault point",
    )
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    assert charges(rt, seeded.stripe_customer) == sorted(
        [("succeeded", 1200), ("succeeded", report.proration.net)]
    )
    assert get(rt, BillingRun, report.billing_run_id).status == "started"  # charged, not recorded
    assert pro not in [i.price_id for i in items_of(rt, seeded.subscription_id)]  # not swapped yet

    wait_until(
        lambda: rt.store.get_run(job["id"])["lease_expires_at"] < time.time() * 1000,
        message="the killed worker's lease to expire",
    )
    survivor = flowjobs("run-worker", "--burst", "--no-scheduler", env=env, timeout=120)
    assert survivor.returncode == 0, survivor.stderr
    assert [a["outcome"] for a in rt.store.attempts(job["id"])] == ["crashed", "succeeded"]
    assert get(rt, BillingRun, report.billing_run_id).status == "succeeded"
    assert charges(rt, seeded.stripe_customer) == sorted(
        [("succeeded", 1200), ("succeeded", report.proration.net)]
    )
    new_items = [i for i in items_of(rt, seeded.subscription_id) if i.price_id == pro]
    assert len(new_items) == 1 and new_items[0].expired_at is None
    assert len([i for i in items_of(rt, seeded.subscription_id) if i.expired_at is None]) == 1
    assert len(tasks_named(rt, "send-customer-subscription-adjusted-notification")) == 1


def test_adjustment_run_never_charged_gives_up_without_a_ladder_and_keeps_the_old_plan(brt, clock):
    """The failure hook puts an uncharged adjustment run back (bounded); when it gives up, the
    proration item leaves the period and no regular retry run is scheduled for it."""
    from flowjobs.billing.runs import settle_failed_job

    seeded = paid_subscription(brt, clock, unit_price=1200)
    pro = new_price(brt, seeded.org_id, "Pro", 4900)
    at(clock, START + timedelta(days=14))
    report = adjust_subscription(brt.billing, seeded.subscription_id, price_id=pro)
    actions = [
        settle_failed_job(brt.billing, report.billing_run_id, None, "boom").action
        for _ in range(brt.billing.settings.max_requeues + 1)
    ]
    assert actions == ["requeued"] * brt.billing.settings.max_requeues + ["failed"]
    assert get(brt, BillingRun, report.billing_run_id).status == "failed"
    assert [r.id for r in _runs(brt, seeded.subscription_id) if r.status == "scheduled"] == []
    with brt.billing.unit() as s:
        names = [
            i.name
            for i in s.exec(
                select(BillingPeriodItem).where(
                    BillingPeriodItem.billing_period_id == seeded.period_id
                )
            )
        ]
    assert names == ["Pro"]
    assert active_prices(brt, seeded.subscription_id, START + timedelta(days=14))[0][1] == 1200
    assert charges(brt, seeded.stripe_customer) == [("succeeded", 1200)]


@pytest.mark.parametrize("then", ["upgrade-now", "withdraw"])
def test_a_scheduled_downgrade_is_replaced_by_a_later_request(brt, clock, then):
    """As upstream: a new adjustment replaces the scheduled one, whose future-dated items never
    become active; asking for the current plan withdraws it."""
    seeded = paid_subscription(brt, clock, unit_price=4900)
    current = get(brt, Subscription, seeded.subscription_id).price_id
    starter = new_price(brt, seeded.org_id, "Starter", 1200)
    team = new_price(brt, seeded.org_id, "Team", 19900)
    at(clock, START + timedelta(days=7))
    assert (
        adjust_subscription(brt.billing, seeded.subscription_id, price_id=starter).action
        == "scheduled"
    )
    at(clock, START + timedelta(days=14))
    if then == "upgrade-now":
        report = adjust_subscription(brt.billing, seeded.subscription_id, price_id=team)
        assert report.action == "charging" and report.proration.net == 2450 + 9950 - 4900
        drain(brt)
        expected, billed = team, 19900
    else:
        dry = adjust_subscription(
            brt.billing, seeded.subscription_id, price_id=current, dry_run=True
        )
        assert (dry.action, dry.detail) == (
            "dry-run",
            f"the change scheduled for {iso_datetime(END)} would be withdrawn; nothing changed",
        )
        report = adjust_subscription(brt.billing, seeded.subscription_id, price_id=current)
        assert report.action == "unscheduled"
        expected, billed = current, 4900
    assert get(brt, Subscription, seeded.subscription_id).scheduled_adjustment_at is None
    at(clock, END + timedelta(minutes=5))
    brt.trigger(
        "hourly-cron",
        {
            "timestamp": iso(clock.now_ms()),
            "scheduleId": "hourly-cron",
            "lastTimestamp": iso(clock.now_ms() - 3_600_000),
        },
    )
    drain(brt)
    assert active_prices(brt, seeded.subscription_id, END + timedelta(minutes=5)) == [
        (expected, billed, 1)
    ]
    assert get(brt, Subscription, seeded.subscription_id).price_id == expected
    assert ("succeeded", billed) in charges(brt, seeded.stripe_customer)
    assert ("succeeded", 1200) not in charges(brt, seeded.stripe_customer)


# -- review fixes (session 17): a period whose charge failed, nothing due, a requeued run -----------


def test_a_plan_change_waits_while_the_periods_charge_gave_up_and_its_retry_is_pending(brt, clock):
    """The period's run gave up without charging (Stripe unreachable) and its retry is days away:
    a plan change then would charge a proration for an unpaid period, and the retry would bill
    the period's invoice in full beside it. Refused until the retry has paid; then the
    proration nets what the retry paid."""
    from flowjobs.billing.runs import settle_failed_job

    at(clock, START)
    seeded = seed(brt, unit_price=1200)
    pro = new_price(brt, seeded.org_id, "Pro", 4900)
    for _ in range(brt.billing.settings.max_requeues + 1):
        settle_failed_job(brt.billing, seeded.billing_run_id, None, "Stripe unreachable")
    assert get(brt, BillingRun, seeded.billing_run_id).status == "failed"
    [retry] = [r for r in _runs(brt, seeded.subscription_id) if r.status == "scheduled"]
    assert get(brt, Subscription, seeded.subscription_id).status == "active"
    at(clock, START + timedelta(days=1))
    with pytest.raises(
        AdjustmentRefused, match=f"failed \\(billing run {seeded.billing_run_id}\\)"
    ):
        adjust_subscription(brt.billing, seeded.subscription_id, price_id=pro)
    assert [r.id for r in _runs(brt, seeded.subscription_id) if r.is_adjustment] == []

    at(clock, retry.scheduled_for + timedelta(minutes=1))
    assert execute_billing_run(brt.billing, retry.id, "job_retry").action == "charged"
    at(clock, START + timedelta(days=14))
    report = adjust_subscription(brt.billing, seeded.subscription_id, price_id=pro)
    assert (report.proration.paid, report.proration.net) == (1200, 600 + 2450 - 1200)
    assert execute_billing_run(brt.billing, report.billing_run_id, "job_adj").action == "charged"
    assert charges(brt, seeded.stripe_customer) == [("succeeded", 1200), ("succeeded", 1850)]


def test_a_plan_change_with_nothing_due_after_the_discount_still_changes_the_plan(brt, clock):
    """A 100 % discount leaves the proration's invoice nothing to charge: the run settles as
    paid, and the new items take effect and are announced as a charged change's are."""
    at(clock, START)
    seeded = seed(brt, unit_price=1200, discount=(100, "percent"))
    assert execute_billing_run(brt.billing, seeded.billing_run_id, "job_first").action == (
        "nothing_to_charge"
    )
    pro = new_price(brt, seeded.org_id, "Pro", 4900)
    at(clock, START + timedelta(days=14))
    report = adjust_subscription(brt.billing, seeded.subscription_id, price_id=pro)
    assert report.action == "charging" and report.proration.net > 0
    outcome = execute_billing_run(brt.billing, report.billing_run_id, "job_adj")
    assert outcome.action == "nothing_to_charge"
    assert get(brt, BillingRun, report.billing_run_id).status == "succeeded"
    assert active_prices(brt, seeded.subscription_id, START + timedelta(days=14)) == [
        (pro, 4900, 1)
    ]
    assert get(brt, Subscription, seeded.subscription_id).price_id == pro
    for task in ADJUSTED:
        assert len(tasks_named(brt, task)) == 1, task
    assert charges(brt, seeded.stripe_customer) == []
    # `billing show billing-run` shows the run's own (proration) invoice, not the period's
    shown = views.show(brt.billing, "billing-run", report.billing_run_id)
    assert [line["description"] for line in shown["money"]["lines"]] == [PRORATION_ITEM]


def test_a_requeued_plan_change_bills_on_the_invoice_it_made_first(brt, clock):
    """An adjustment run put back after a failed job makes no second invoice (the first would
    stay open, showing an amount due)."""
    from flowjobs.billing.runs import _prepare, settle_failed_job

    seeded = paid_subscription(brt, clock, unit_price=1200)
    pro = new_price(brt, seeded.org_id, "Pro", 4900)
    at(clock, START + timedelta(days=14))
    report = adjust_subscription(brt.billing, seeded.subscription_id, price_id=pro)
    _prepare(brt.billing, report.billing_run_id, "job_a")  # bookkeeping, then the job dies
    assert settle_failed_job(brt.billing, report.billing_run_id, "job_a", "boom").action == (
        "requeued"
    )
    assert execute_billing_run(brt.billing, report.billing_run_id, "job_b").action == "charged"
    with brt.billing.unit() as s:
        invoices = list(
            s.exec(select(Invoice).where(Invoice.billing_run_id == report.billing_run_id))
        )
    assert [(i.status, i.subtotal) for i in invoices] == [("paid", 1850)]
    assert charges(brt, seeded.stripe_customer) == [("succeeded", 1200), ("succeeded", 1850)]


@pytest.mark.parametrize("next_billed", [False, True], ids=["next-unbilled", "next-billed"])
def test_a_plan_change_paid_after_the_rollover_reaches_the_next_period(brt, clock, next_billed):
    """The proration is charged late (a bank debit that took days, a worker down at the period's
    end): the rollover opened the next period with the old items first. Paid, the change
    reaches a next period not billed yet, which bills the new plan; one billed already keeps
    what it was billed, and an alert says so. (It once billed the old price for a period the
    customer spent on the new plan, silently.)"""
    from flowjobs.billing.rollover import transition_billing_period

    seeded = paid_subscription(brt, clock, unit_price=1200)
    pro = new_price(brt, seeded.org_id, "Pro", 4900)
    at(clock, END - timedelta(days=2))
    report = adjust_subscription(brt.billing, seeded.subscription_id, price_id=pro)
    at(clock, END + timedelta(minutes=5))
    transition_billing_period(brt.billing, seeded.period_id)  # before the proration is paid
    [nxt] = [
        r
        for r in _runs(brt, seeded.subscription_id)
        if not r.is_adjustment and r.billing_period_id != seeded.period_id
    ]
    if next_billed:
        assert execute_billing_run(brt.billing, nxt.id, "job_next").action == "charged"
    assert execute_billing_run(brt.billing, report.billing_run_id, "job_adj").action == "charged"
    alerts = tasks_named(brt, "send-alert")
    if not next_billed:
        assert execute_billing_run(brt.billing, nxt.id, "job_next").action == "charged"
        assert alerts == []
        expected_next = 4900
    else:
        [alert] = alerts
        payload = json.loads(alert["payload"])
        assert payload["kind"] == "plan_change_after_billing"
        assert payload["details"]["periodId"] == nxt.billing_period_id
        expected_next = 1200
    proration = report.proration.net
    assert sorted(charges(brt, seeded.stripe_customer)) == sorted(
        [("succeeded", 1200), ("succeeded", proration), ("succeeded", expected_next)]
    )
    assert active_prices(brt, seeded.subscription_id, END + timedelta(days=1)) == [(pro, 4900, 1)]


def test_two_plan_changes_at_once_charge_one_proration(brt, clock, monkeypatch):
    """Two operators (or a double-clicked button) asking for the same upgrade at the same moment:
    the subscription's row is locked first, so the second waits, sees the first's adjustment
    run and is refused. On PostgreSQL both used to charge the proration."""
    import threading

    from flowjobs.billing import adjust

    seeded = paid_subscription(brt, clock, unit_price=1200)
    pro = new_price(brt, seeded.org_id, "Pro", 4900)
    at(clock, START + timedelta(days=14))
    inside, both = [], threading.Event()
    check_price = adjust._check_price

    def held(s, sub, price_id):  # hold the first change open until the second gets this far
        inside.append(price_id)
        if len(inside) == 2:
            both.set()
        both.wait(1.0)  # the second cannot arrive while the first holds the row
        return check_price(s, sub, price_id)

    monkeypatch.setattr(adjust, "_check_price", held)
    start, results = threading.Barrier(2), []

    def change():
        start.wait(10)
        try:
            results.append(adjust_subscription(brt.billing, seeded.subscription_id, price_id=pro))
        except AdjustmentRefused as exc:
            results.append(exc)

    threads = [threading.Thread(target=change) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    actions = sorted(getattr(r, "action", type(r).__name__) for r in results)
    assert actions == ["AdjustmentRefused", "charging"], results
    assert [r.is_adjustment for r in _runs(brt, seeded.subscription_id)].count(True) == 1


def test_a_merchant_of_record_proration_is_figured_before_tax_and_taxed_once(
    make_runtime, localstripe_url, clock
):
    """The old and new totals are pre-tax, so what was paid counts pre-tax too; tax is added on
    the net when it is charged. The tax paid used to count as paid for the plan: 10.00 → 30.00
    halfway charged 8.00 + 20 % instead of 10.00 + 20 %."""
    rt = make_runtime(billing={"tax_calculator": "flat:20"}, **stripe_sections(localstripe_url))
    at(clock, START)
    seeded = seed(
        rt, unit_price=1000, org_fields={"stripe_connect_contract_type": "merchant_of_record"}
    )
    assert execute_billing_run(rt.billing, seeded.billing_run_id, "job_first").action == "charged"
    pro = new_price(rt, seeded.org_id, "Pro", 3000)
    at(clock, START + (END - START) / 2)
    report = adjust_subscription(rt.billing, seeded.subscription_id, price_id=pro)
    assert report.proration.net == 500 + 1500 - 1000
    assert "$10.00 plus tax" in report.detail
    assert execute_billing_run(rt.billing, report.billing_run_id, "job_adj").action == "charged"
    assert charges(rt, seeded.stripe_customer) == [("succeeded", 1200), ("succeeded", 1200)]


def test_a_quantity_past_any_charge_is_refused(brt, clock):
    seeded = paid_subscription(brt, clock, unit_price=1200)
    pro = new_price(brt, seeded.org_id, "Pro", 4900)
    with pytest.raises(AdjustmentRefused, match="more than any charge can be"):
        adjust_subscription(
            brt.billing, seeded.subscription_id, price_id=pro, quantity=10**20, dry_run=True
        )
    assert [r.is_adjustment for r in _runs(brt, seeded.subscription_id)] == [False]
