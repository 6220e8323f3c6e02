"""The billing commands as a user runs them: trigger billing-run, billing show/summary, demo seed."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest

from flowjobs.billing.models import BillingRun, Subscription
from flowjobs.billing.types import utc_from_ms
from flowjobs.core.clock import iso_datetime
from tests.billing_helpers import drain, get
from tests.cli_helpers import ROOT, as_json, cli_env, flowjobs


@pytest.fixture
def env(sqlite_url, localstripe_url):
    return cli_env(
        sqlite_url,
        FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_cli",
        FLOWJOBS_STRIPE_API_BASE=localstripe_url,
    )


def test_the_readme_billing_steps_bill_the_seeded_declining_renewal(env):
    """README "Billing": `demo seed --declining 1`, then `schedules trigger hourly-cron`, then
    a worker: the declining customer's renewal is billed and declined (past_due). Its period
    used to end a day early after a 30-day month (or before the hour), outside the cron's
    window, and nothing was billed."""
    seeded = as_json(
        flowjobs("demo", "seed", "--customers", "1", "--declining", "1", "--json", env=env)
    )
    [sub_id] = seeded["subscriptions"]
    fired = flowjobs("schedules", "trigger", "hourly-cron", env=env)
    assert fired.returncode == 0, fired.stderr
    worker = flowjobs("run-worker", "--burst", "--no-scheduler", env=env)
    assert worker.returncode == 0, worker.stderr
    sub = as_json(flowjobs("billing", "show", "subscription", sub_id, "--json", env=env))
    assert sub["subscription"]["status"] == "past_due", sub["subscription"]
    runs = as_json(flowjobs("billing", "list", "billing-runs", "--json", env=env))
    assert sorted(r["status"] for r in runs) == ["failed", "scheduled", "succeeded"], runs
    [failed] = [r for r in runs if r["status"] == "failed"]
    assert failed["completed_at"], failed  # settled, though declined (docs/billing.md §13.15)


def test_billing_list_shows_the_catalogue_whose_ids_other_commands_take(env):
    """`billing adjust --price` needs a price id, `--customer` a customer's, `--organization`
    an organisation's: `billing list prices|customers|organizations` finds them (an operator
    had to open the database with sqlite3 for them)."""
    seeded = as_json(
        flowjobs("demo", "seed", "--customers", "2", "--declining", "0", "--json", env=env)
    )
    shown = as_json(
        flowjobs("billing", "show", "subscription", seeded["subscriptions"][0], "--json", env=env)
    )["subscription"]
    prices = as_json(flowjobs("billing", "list", "prices", "--json", env=env))
    [price] = [p for p in prices if p["id"] == shown["price_id"]]
    assert price["organization_id"] == shown["organization_id"] and price["active"] is True
    assert isinstance(price["unit_price"], int) and price["currency"] == "USD"
    table = flowjobs("billing", "list", "prices", env=env).stdout.splitlines()
    assert table[0].split("\t")[:4] == ["id", "name", "unit_price", "currency"]
    assert any(line.startswith(price["id"] + "\t") and "$" in line for line in table[1:])
    customers = as_json(
        flowjobs(
            "billing",
            "list",
            "customers",
            "--organization",
            shown["organization_id"],
            "--json",
            env=env,
        )
    )
    assert shown["customer_id"] in [c["id"] for c in customers] and len(customers) == 2
    customer = as_json(
        flowjobs("billing", "show", "customer", shown["customer_id"], "--json", env=env)
    )
    assert customer["customer"]["id"] == shown["customer_id"]
    assert [sub["id"] for sub in customer["subscriptions"]] == [shown["id"]]
    items = as_json(flowjobs("billing", "show", "subscription", shown["id"], "--json", env=env))[
        "items"
    ]
    assert [i["price_id"] for i in items] == [shown["price_id"]]
    # an item's unit_price is money: with its price's currency, and shown as money
    assert items[0]["currency"] == price_currency(price, shown["price_id"], env)
    text = flowjobs("billing", "show", "subscription", shown["id"], env=env).stdout
    item_line = text.split("== items (1) ==\n", 1)[1].splitlines()[0]
    assert re.search(r"unit_price=\$[\d,]+\.\d\d ", item_line), item_line
    assert (
        as_json(
            flowjobs(
                "billing", "list", "customers", "--organization", "org_none", "--json", env=env
            )
        )
        == []
    )
    orgs = as_json(flowjobs("billing", "list", "organizations", "--json", env=env))
    assert [o["id"] for o in orgs] == [shown["organization_id"]]
    refused = flowjobs("billing", "list", "prices", "--status", "active", env=env)
    assert refused.returncode == 2
    assert refused.stderr == "error: --status does not apply to prices (only --organization does)\n"


def test_events_fetch_brings_in_the_stripe_events_the_inbox_missed(env):
    """Purchases paid at Stripe while no webhook reached flowjobs: `events fetch` reads the
    events back from Stripe's Events API (here localstripe, which other tests share: their
    events name objects this database lacks and are skipped), stores and routes them, and the
    worker records the payments. Fetched again: duplicates, nothing runs twice. With more than
    --limit, the oldest are taken and a note gives the --since for the rest."""
    seeded = as_json(
        flowjobs(
            "demo",
            "seed",
            "--customers",
            "2",
            "--declining",
            "0",
            "--purchases",
            "2",
            "--json",
            env=env,
        )
    )
    assert len(seeded["paymentIntents"]) == 2
    args = ("events", "fetch", "--type", "payment_intent.succeeded", "--since", "10m")
    intents = set(seeded["paymentIntents"])
    dry = as_json(flowjobs(*args, "--dry-run", "--json", env=env))
    assert sorted(e["status"] for e in dry if e["object"] in intents) == ["new", "new"], dry
    assert not any(e["status"] == "created" for e in dry)
    limited = flowjobs(*args, "--limit", "1", "--dry-run", "--json", env=env)
    [oldest] = as_json(limited)
    assert oldest["created"] == min(e["created"] for e in dry)
    assert "more than --limit 1 matched; these were the oldest" in limited.stderr
    fetched = flowjobs(*args, "--json", env=env)
    assert fetched.returncode == 0, fetched.stderr
    created = [e for e in as_json(fetched) if e["object"] in intents]
    assert [e["status"] for e in created] == ["created"] * 2, as_json(fetched)
    assert all(e["run"] for e in created)
    assert "since 10m:" in fetched.stderr and " created" in fetched.stderr
    worker = flowjobs("run-worker", "--burst", "--no-scheduler", env=env)
    assert worker.returncode == 0, worker.stderr
    paid = as_json(
        flowjobs("billing", "list", "payments", "--status", "succeeded", "--json", env=env)
    )
    assert len(paid) == 2, paid  # the purchases (no subscription's first run was triggered)
    again = as_json(flowjobs(*args, "--json", env=env))
    ours = {e["eventId"] for e in created}
    assert [e["status"] for e in again if e["eventId"] in ours] == ["duplicate"] * 2
    bad = flowjobs("events", "fetch", "--since", "soon", env=env)
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr


def test_a_demo_period_ends_moments_ago_and_within_the_hour():
    from datetime import UTC, datetime, timedelta

    from flowjobs.billing.demo import just_ended

    for now in (
        datetime(2026, 12, 1, 10, 0, 0, 200_000, tzinfo=UTC),
        datetime(2026, 12, 1, 10, 31, tzinfo=UTC),
    ):
        end = just_ended(now)
        assert now.replace(minute=0, second=0, microsecond=0) <= end < now
        assert now - end <= timedelta(seconds=30)


def test_seed_trigger_a_billing_run_and_show_what_it_did(env):
    seeded = as_json(
        flowjobs("demo", "seed", "--customers", "2", "--declining", "0", "--json", env=env)
    )
    assert seeded["customers"] == 2 and len(seeded["billingRuns"]) == 2
    run_id = seeded["billingRuns"][0]

    triggered = as_json(flowjobs("trigger", "billing-run", run_id, "--json", env=env))
    assert (triggered["task"], triggered["status"]) == ("attempt-billing-run", "queued")
    repeated = as_json(flowjobs("trigger", "billing-run", run_id, "--json", env=env))
    assert (
        repeated["id"] == triggered["id"] and repeated["deduplicated"]
    )  # key attempt-billing-run:<id>
    worker = flowjobs("run-worker", "--burst", "--no-scheduler", env=env)
    assert worker.returncode == 0, worker.stderr
    shown = as_json(flowjobs("billing", "show", "billing-run", run_id, "--json", env=env))
    assert shown["billingRun"]["status"] == "succeeded"
    assert [p["status"] for p in shown["payments"]] == ["succeeded"]
    again = flowjobs("trigger", "billing-run", run_id, env=env)
    assert (
        again.returncode == 2
        and "is succeeded; only scheduled billing runs are executed" in again.stderr
    )

    sub = as_json(
        flowjobs("billing", "show", "subscription", seeded["subscriptions"][0], "--json", env=env)
    )
    assert sub["subscription"]["status"] == "active" and len(sub["invoices"]) == 1
    invoice = as_json(
        flowjobs("billing", "show", "invoice", sub["invoices"][0]["id"], "--json", env=env)
    )
    assert invoice["invoice"]["status"] == "paid" and len(invoice["lineItems"]) == 1
    summary = as_json(flowjobs("billing", "summary", "--json", env=env))
    assert summary["billingRuns"] == {"succeeded": 1, "scheduled": 1}
    text = flowjobs("billing", "summary", env=env).stdout
    assert "charged: 1 billing runs succeeded" in text and "collected: $" in text


MOMENT = re.compile(r"\d{4}-\d\d-\d\dT")  # a string that starts like a moment
ONE_FORM = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")  # as `runs list` writes it


def moments(value, path="$"):
    """(path, string) for every string in a JSON value that starts like a moment."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from moments(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from moments(item, f"{path}[{i}]")
    elif isinstance(value, str) and MOMENT.match(value):
        yield path, value


def test_every_moment_in_json_output_has_one_form(env, tmp_path):
    """Runs, billing rows, inbox events and endpoints: every moment a --json output holds is
    UTC with milliseconds and a Z (billing, events and endpoints wrote `+00:00` with
    microseconds, runs and workers `.mmmZ`)."""
    seeded = as_json(
        flowjobs("demo", "seed", "--customers", "1", "--declining", "0", "--json", env=env)
    )
    run_id, sub_id = seeded["billingRuns"][0], seeded["subscriptions"][0]
    flowjobs("trigger", "billing-run", run_id, env=env)
    assert flowjobs("run-worker", "--burst", "--no-scheduler", env=env).returncode == 0
    example = ROOT / "examples" / "stripe-customer-created.json"
    assert flowjobs("replay-event", str(example), env=env).returncode == 0
    org = as_json(flowjobs("billing", "show", "subscription", sub_id, "--json", env=env))
    org_id = org["subscription"]["organization_id"]
    added = flowjobs("endpoints", "add", org_id, "--url", "https://example.com/hook", env=env)
    assert added.returncode == 0, added.stderr
    invoice_id = org["invoices"][0]["id"]
    event_id = as_json(flowjobs("events", "list", "--json", env=env))[0]["id"]
    outputs = {
        " ".join(args): as_json(flowjobs(*args, "--json", env=env))
        for args in [
            ("runs", "list"),
            ("runs", "show", as_json(flowjobs("runs", "list", "--json", env=env))[0]["id"]),
            ("billing", "show", "subscription", sub_id),
            ("billing", "show", "billing-run", run_id),
            ("billing", "show", "invoice", invoice_id),
            ("billing", "list", "subscriptions"),
            ("billing", "list", "invoices"),
            ("billing", "list", "payments"),
            ("events", "list"),
            ("events", "show", event_id),
            ("endpoints", "list", org_id),
            ("schedules", "list"),
        ]
    }
    canceled = flowjobs("billing", "cancel", sub_id, "--at-period-end", "--json", env=env)
    outputs["billing cancel"] = as_json(canceled)  # last: it changes the subscription
    found = [(cmd, path, v) for cmd, out in outputs.items() for path, v in moments(out)]
    assert len({cmd for cmd, _, _ in found}) >= 11, found  # the check reached them
    assert [f for f in found if not ONE_FORM.fullmatch(f[2])] == []


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["trigger", "billing-run", "billing_run_nope"], 3, "no billing run 'billing_run_nope'"),
        (["trigger", "billing-run"], 2, "needs the id"),
        (["trigger", "hello-world", "surplus"], 2, "task payloads go in --payload"),
        (["billing", "show", "subscription", "sub_nope"], 3, "no subscription 'sub_nope'"),
        (
            ["billing", "show", "price", "x"],
            2,
            "kind must be one of: subscription, invoice, billing-run, purchase, customer "
            "(not 'price'; prices are listed, every column, by `flowjobs billing list prices`)",
        ),
        (["billing", "show", "sub", "x"], 2, "(not 'sub'; did you mean 'subscription'?)"),
        (
            ["billing", "show", "payment", "x"],
            2,
            "(not 'payment'; payments are listed, every column, by `flowjobs billing list payments`)",
        ),
        (["demo", "seed", "--customers", "2", "--declining", "3"], 2, "--declining cannot be more"),
    ],
)
def test_billing_commands_refuse_bad_input_clearly(env, args, code, message):
    result = flowjobs(*args, env=env)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_demo_seed_without_a_stripe_key_says_which_setting_is_missing(sqlite_url):
    result = flowjobs("demo", "seed", env=cli_env(sqlite_url))
    assert result.returncode == 2
    assert "stripe.test_api_key: not set" in result.stderr and "Traceback" not in result.stderr


def test_events_fetch_without_a_stripe_key_says_so_and_makes_no_database(tmp_path):
    db = tmp_path / "flowjobs.db"
    result = flowjobs("events", "fetch", env=cli_env(f"sqlite:///{db}"))
    assert result.returncode == 2, result.stderr
    assert "stripe.test_api_key: not set" in result.stderr and "Traceback" not in result.stderr
    assert not db.exists()


def test_demo_seed_with_stripe_unreachable_writes_nothing(sqlite_url):
    import sqlite3

    env = cli_env(
        sqlite_url,
        FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_cli",
        FLOWJOBS_STRIPE_API_BASE="http://127.0.0.1:9",
        FLOWJOBS_STRIPE_MAX_RETRIES="0",
    )
    result = flowjobs("demo", "seed", "--customers", "3", env=env)
    assert result.returncode == 1
    assert "cannot reach Stripe at http://127.0.0.1:9 after 1 tries" in result.stderr
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        assert conn.execute("SELECT count(*) FROM organizations").fetchone() == (0,)


# -- trigger billing-run charges now; billing list / show on both backends ----------------
@pytest.fixture
def live(make_runtime, clock, localstripe_url):
    """An in-process runtime on the real clock (the CLI subprocesses' clock) and localstripe."""
    from tests.billing_helpers import stripe_sections

    clock.set(int(time.time() * 1000))
    return make_runtime(**stripe_sections(localstripe_url))


def _now(clock):
    clock.set(int(time.time() * 1000) + 1000)
    return utc_from_ms(clock.now_ms())


def test_trigger_billing_run_charges_a_future_run_now_and_says_so(
    live, clock, db_url, localstripe_url
):
    from tests.billing_helpers import seed

    env = cli_env(
        db_url,
        FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_flowjobs",
        FLOWJOBS_STRIPE_API_BASE=localstripe_url,
    )
    start = utc_from_ms(clock.now_ms()) + timedelta(days=10)
    seeded = seed(live, start=start, unit_price=19900)
    with (
        live.billing.unit() as s
    ):  # as the rollover does: a flowjobs run waiting for the period's start
        waiting = live.billing.trigger(
            s,
            "attempt-billing-run",
            {"billingRunId": seeded.billing_run_id},
            key=f"attempt-billing-run:{seeded.billing_run_id}",
            run_at=start,
        )
    assert waiting.status == "delayed"

    result = flowjobs("trigger", "billing-run", seeded.billing_run_id, "--json", env=env)
    done = as_json(result)
    assert (done["id"], done["status"], done["action"]) == (waiting.id, "queued", "moved")
    assert f"scheduled_for moved from {iso_datetime(start)} to " in done["detail"]
    assert "made due now" in done["detail"] and f"run {waiting.id} charges it now" in done["detail"]
    moved_to = get(live, BillingRun, seeded.billing_run_id).scheduled_for
    assert moved_to < start - timedelta(days=9)
    assert any(
        f"scheduled_for moved from {iso_datetime(start)} to {iso_datetime(moved_to)}"
        in line["message"]
        for line in live.store.logs(waiting.id)
    )  # what `flowjobs runs show` prints

    _now(clock)
    drain(live)
    assert get(live, BillingRun, seeded.billing_run_id).status == "succeeded"
    assert live.billing.gateway.count_charges(False, seeded.stripe_customer) == {"succeeded": 1}
    again = flowjobs("trigger", "billing-run", seeded.billing_run_id, env=env)
    assert again.returncode == 2 and again.stderr == (
        f"error: billing run {seeded.billing_run_id} is succeeded; only scheduled billing runs are executed\n"
    )

    other = seed(live, card=None)  # a billing run being charged by another flowjobs run
    with live.billing.unit() as s:
        sub = s.get(Subscription, seeded.subscription_id)
        run = BillingRun(
            id="billing_run_charging",
            livemode=False,
            billing_period_id=seeded.period_id,
            scheduled_for=sub.current_billing_period_start,
            status="started",
            claimed_by_run=waiting.id,
            subscription_id=sub.id,
            payment_method_id=seeded.method_id,
        )
        s.add(run)
    charging = flowjobs("trigger", "billing-run", "billing_run_charging", env=env)
    assert charging.returncode == 0 and charging.stdout == f"{waiting.id}\n"
    assert (
        f"billing run billing_run_charging is already started: run {waiting.id} (completed) charges it"
        in charging.stderr
    )
    assert other.billing_run_id is None

    # billing list / show: ids without SQL, money as money
    customer = seeded.customer_id
    runs = as_json(
        flowjobs(
            "billing",
            "list",
            "billing-runs",
            "--customer",
            customer,
            "--status",
            "succeeded",
            "--json",
            env=env,
        )
    )
    assert [r["id"] for r in runs] == [seeded.billing_run_id]
    [invoice] = as_json(
        flowjobs("billing", "list", "invoices", "--customer", customer, "--json", env=env)
    )
    assert (invoice["status"], invoice["total"], invoice["due"], invoice["currency"]) == (
        "paid",
        19900,
        0,
        "USD",
    )
    payments = flowjobs(
        "billing", "list", "payments", "--status", "succeeded", "--customer", customer, env=env
    )
    assert payments.stdout.splitlines()[0].split("\t") == [
        "id",
        "status",
        "amount",
        "currency",
        "customer_id",
        "invoice_id",
        "charge_date",
    ]
    assert (
        "\tsucceeded\t$199.00\tUSD\t" in payments.stdout and len(payments.stdout.splitlines()) == 2
    )
    subs = flowjobs("billing", "list", "subscriptions", env=env).stdout
    assert seeded.subscription_id in subs and other.subscription_id in subs
    mine = flowjobs(
        "billing", "list", "subscriptions", "--organization", other.org_id, env=env
    ).stdout
    assert other.subscription_id in mine and seeded.subscription_id not in mine
    runs_of_org = as_json(
        flowjobs(
            "billing", "list", "billing-runs", "--organization", seeded.org_id, "--json", env=env
        )
    )
    assert seeded.billing_run_id in [r["id"] for r in runs_of_org]
    bad = flowjobs("billing", "list", "invoices", "--status", "settled", env=env)
    assert bad.returncode == 2 and bad.stderr == (
        "error: --status of invoices must be one of: draft, open, paid, uncollectible, void, "
        "refunded, partially_refunded, awaiting_payment_confirmation (not 'settled')\n"
    )

    shown = flowjobs("billing", "show", "invoice", invoice["id"], env=env).stdout
    assert "\n  id: " + invoice["id"] + "\n  status: paid\n" in shown
    assert "  subtotal: $199.00\n" in shown and "  currency: USD\n" in shown
    assert (
        f"  invoice_date: {invoice['invoice_date']}\n" in shown and "T" in invoice["invoice_date"]
    )
    assert "price=$199.00" in shown and "amount=$199.00" in shown  # the line and the payment
    assert "total=$199.00" in shown and "due=$0.00" in shown


def price_currency(listed: dict, price_id: str, env) -> str:
    """The currency `billing list prices` gives the price `price_id`."""
    if listed["id"] == price_id:
        return listed["currency"]
    prices = as_json(flowjobs("billing", "list", "prices", "--json", env=env))
    return next(p["currency"] for p in prices if p["id"] == price_id)
