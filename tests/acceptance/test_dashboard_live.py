"""The dashboard in a real headless Chromium with its JavaScript running (DevTools protocol on a
pipe, tests/acceptance/dashboard_chromium.py): the overview refreshes its counts in place, every page
renders what it promises, and the actions go through a confirmation form carrying a CSRF
token. Screenshots land in test-artifacts/dashboard/. SQLite only: the pages read through
store/insights.py, which tests/store/test_dashboard_insights.py runs on both backends."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta

import pytest

from flowjobs.store.states import RunStatus
from tests.acceptance.dashboard_chromium import Browser, serve
from tests.billing_helpers import drain


def seed_billing(rt) -> dict:
    """An organisation, a customer, a subscription with a paid first period (invoice with a
    PDF link, succeeded payment) — written straight through the models, no Stripe."""
    from flowjobs.billing import setup
    from flowjobs.billing.demo import _paid
    from flowjobs.billing.enums import BillingRunStatus, SubscriptionStatus
    from flowjobs.billing.models import Invoice, Payment

    b = rt.billing
    with b.unit() as s:
        org = setup.organization(s, "Acme Analytics", currency="EUR")
        cust = setup.customer(s, org, email="ada@example.com", name="Ada Lovelace")
        method = setup.card(s, cust, stripe_payment_method_id="pm_test_1", last4="4242")
        price = setup.plan(s, org, "Pro", 4900)
        sub, period, run = setup.subscription(
            s, cust, price, method, start=b.now() - timedelta(days=31)
        )
        _paid(s, sub, period, run, cust)
        s.flush()
        from sqlmodel import select

        invoice = s.exec(select(Invoice).where(Invoice.subscription_id == sub.id)).one()
        invoice.pdf_url = f"file:///tmp/{invoice.id}.pdf"
        payment = s.exec(select(Payment).where(Payment.billing_run_id == run.id)).one()
        # another customer whose first billing run failed (declined; no retry scheduled yet)
        grace = setup.customer(s, org, email="grace@example.com", name="Grace Hopper")
        card = setup.card(s, grace, stripe_payment_method_id="pm_test_2", last4="4000")
        team = setup.plan(s, org, "Team", 9900)
        failed_sub, _period, failed = setup.subscription(
            s, grace, team, card, start=b.now() - timedelta(days=2)
        )
        failed.status = BillingRunStatus.FAILED
        failed.error_details = {"message": "card declined"}
        failed_sub.status = SubscriptionStatus.PAST_DUE
        return {
            "subscription": sub.id,
            "billing_run": run.id,
            "invoice": invoice.id,
            "payment": payment.id,
            "customer": cust.id,
            "organization": org.id,
            "failed_run": failed.id,
            "failed_period": failed.billing_period_id,
        }


def seed_inbox(rt, run_id: str) -> str:
    from flowjobs import ids
    from flowjobs.webhooks.models import InboxEvent

    with rt.billing.unit() as s:
        row = InboxEvent(
            id=ids.new_id("whevt"),
            source="stripe",
            event_id="evt_dash_1",
            type="invoice.paid",
            livemode=False,
            body=b'{"id": "evt_dash_1", "type": "invoice.paid", "note": "<b>raw</b>"}',
            headers={"Stripe-Signature": "t=1,v1=abc"},
            signature="verified",
            signature_detail="v1 matched endpoint secret",
            received_at=s.info["now"],
            status="routed",
            task="hello-world",
            run_id=run_id,
        )
        s.add(row)
        return row.id


@pytest.fixture
def site(sqlite_url, tmp_path):
    from flowjobs.runtime import Runtime
    from tests.conftest import make_settings

    rt = Runtime(
        make_settings(
            sqlite_url,
            tmp_path,
            schedules={"minutely": {"task": "hello-world", "cron": "* * * * *"}},
        )
    )
    ok = rt.trigger("hello-world", {"customer": "Ada"}, idempotency_key="order-77")
    bad = rt.trigger("test-exit")
    drain(rt)
    later = rt.trigger("noop", delay="2h")
    billing = seed_billing(rt)
    failed_billing = rt.trigger(
        "attempt-billing-run", {"billingRunId": billing["failed_run"]}, delay="1h"
    )
    # what the paid billing run's outcome set off: its invoice PDF and its receipt
    pdf = rt.trigger("generate-invoice-pdf", {"invoiceId": billing["invoice"]})
    receipt = rt.trigger("generate-payment-receipt-pdf", {"paymentId": billing["payment"]})
    with rt.db.transaction() as conn:  # as a billing job that failed for good would leave it
        conn.execute(
            f"UPDATE flowjobs_runs SET status = '{RunStatus.FAILED}', finished_at = created_at, "
            "error = 'card declined' WHERE id = :id",
            {"id": failed_billing.id},
        )
        for done in (pdf, receipt):  # as the worker left them
            conn.execute(
                f"UPDATE flowjobs_runs SET status = '{RunStatus.COMPLETED}', "
                "finished_at = created_at WHERE id = :id",
                {"id": done.id},
            )
    rt.scheduler.tick()
    inbox_id = seed_inbox(rt, ok.id)
    ids = {
        "ok": ok.id,
        "bad": bad.id,
        "later": later.id,
        "failed_billing": failed_billing.id,
        "pdf": pdf.id,
        "receipt": receipt.id,
        "inbox": inbox_id,
        **billing,
    }
    with serve(rt, tmp_path, FLOWJOBS_DASHBOARD_ALLOW_ACTIONS="true") as base:
        with Browser() as browser:
            yield rt, base, browser, ids
    rt.close()


def test_overview_counts_refresh_live_without_a_reload(site):
    rt, base, browser, ids = site
    browser.open(f"{base}/")
    browser.wait_for("document.getElementById('live-state').textContent === 'live'")
    browser.evaluate("window.__loadedOnce = 'marker'")
    queued_before = int(browser.text("count-queued"))
    total_before = int(browser.text("count-total"))
    assert browser.evaluate("!!document.querySelector('#throughput-chart rect.bar.completed')")
    assert (
        int(browser.text("finished-completed")) >= 1 and int(browser.text("finished-failed")) >= 1
    )
    assert "hello-world" in browser.text("durations")

    rt.trigger("noop")  # after the page loaded: a new queued run (no worker is running)
    rt.store.register_worker(
        {
            "id": "dash-worker-1",
            "host": "testhost",
            "pid": 4242,
            "version": "test",
            "queues": "*",
            "concurrency": 4,
        },
        rt.clock.now_ms(),
    )
    browser.wait_for(
        f"Number(document.getElementById('count-queued').textContent) > {queued_before}"
    )
    assert int(browser.text("count-total")) == total_before + 1
    browser.wait_for("document.getElementById('worker-rows').textContent.includes('dash-worker-1')")
    assert browser.wait_for("document.getElementById('oldest').textContent.includes('noop')")
    # the same document all along: the marker set after the first load is still there
    assert browser.evaluate("window.__loadedOnce") == "marker"
    assert browser.evaluate("performance.getEntriesByType('navigation').length") == 1
    browser.screenshot("overview.png")

    browser.open(f"{base}/?range=day")
    assert "per 15 min" in browser.evaluate("document.body.innerText")
    browser.screenshot("overview-day.png")


def test_runs_search_delayed_children_and_billing_links(site):
    rt, base, browser, ids = site
    browser.open(f"{base}/runs?q=order-77")
    table = browser.text("runs")
    assert ids["ok"] in table and ids["bad"] not in table
    browser.screenshot("runs-search-key.png")

    browser.open(f"{base}/runs?q={ids['bad']}")  # an exact run id opens the run
    assert browser.evaluate("location.pathname") == f"/runs/{ids['bad']}"

    browser.open(f"{base}/runs?status=delayed")
    assert ids["later"] in browser.text("runs")
    assert "(in 2 h)" in browser.evaluate("document.querySelector('.runs-at').textContent")
    browser.open(f"{base}/runs/{ids['later']}")
    assert "runs in 2 h" in browser.text("runs-in")

    browser.open(f"{base}/runs?since=2099-01-01T00:00:00Z")
    assert "no runs match" in browser.text("runs")
    browser.open(f"{base}/runs?until=2000-01-01T00:00:00Z")
    assert "no runs match" in browser.text("runs")

    browser.open(f"{base}/runs/{ids['failed_billing']}")
    links = browser.text("billing-links")
    assert ids["failed_run"] in links
    browser.screenshot("run-billing.png")
    browser.evaluate("document.querySelector('#billing-links a').click()")
    browser.wait_for(
        "location.pathname.startsWith('/billing/billing-runs/') && !!document.getElementById('runs')"
    )
    assert ids["failed_billing"] in browser.text("runs")  # the billing run lists its runs
    assert browser.evaluate("document.querySelector('#actions a').getAttribute('href')") == (
        f"/billing/billing-runs/{ids['failed_run']}/retry"
    )

    # a paid billing run links to its billing objects and to the runs its outcome set off
    browser.open(f"{base}/billing/billing-runs/{ids['billing_run']}")
    hrefs = browser.evaluate(
        "[...document.querySelectorAll('#object a.object-link')].map(a => a.getAttribute('href'))"
    )
    assert f"/billing/subscriptions/{ids['subscription']}" in hrefs
    assert browser.evaluate(
        f"!!document.querySelector('#related-invoices a[href=\"/billing/invoices/{ids['invoice']}\"]')"
    )
    assert ids["payment"] in browser.text("related-payments")
    children = browser.text("children")
    assert ids["pdf"] in children and ids["receipt"] in children
    assert "generate-invoice-pdf" in children and ids["failed_billing"] not in children
    assert browser.evaluate("document.getElementById('actions')") is None  # paid: no retry
    browser.screenshot("billing-run-children.png")

    # a parent's page lists its child runs
    parent = rt.store.get_run(ids["ok"])
    child = rt.client.replay(parent)
    with rt.db.transaction() as conn:  # link it as a child, as a task's ctx.trigger would
        conn.execute(
            "UPDATE flowjobs_runs SET parent_id = :p WHERE id = :c", {"p": ids["ok"], "c": child.id}
        )
    browser.open(f"{base}/runs/{ids['ok']}")
    assert child.id in browser.text("children")


def test_workers_schedules_and_inbox_pages(site):
    rt, base, browser, ids = site
    rt.store.register_worker(
        {
            "id": "w-page",
            "host": "h1",
            "pid": 7,
            "version": "v",
            "queues": "default",
            "concurrency": 2,
        },
        rt.clock.now_ms(),
    )
    browser.open(f"{base}/workers")
    row = browser.text("workers")
    assert "w-page" in row and "alive" in row
    browser.screenshot("workers.png")

    browser.open(f"{base}/schedules")
    schedules = browser.text("schedules")
    assert "minutely" in schedules and "* * * * *" in schedules and "ok" in schedules
    browser.screenshot("schedules.png")

    browser.open(f"{base}/events")
    assert ids["inbox"] in browser.text("events")
    browser.evaluate("document.querySelector('#events a').click()")
    browser.wait_for(
        f"location.pathname === '/events/{ids['inbox']}' && !!document.getElementById('raw')"
    )
    assert "verified" in browser.text("signature")
    assert ids["ok"] in browser.text("made-run")
    raw = browser.text("raw")
    assert "evt_dash_1" in raw and "<b>raw</b>" in raw  # shown as text, never markup
    assert browser.evaluate("document.querySelector('#raw b')") is None
    browser.screenshot("inbox-event.png")
    with urllib.request.urlopen(f"{base}/events/{ids['inbox']}/raw", timeout=10) as response:
        assert response.read() == (
            b'{"id": "evt_dash_1", "type": "invoice.paid", "note": "<b>raw</b>"}'
        )
        assert response.headers["Content-Type"].startswith("text/plain")


def test_billing_pages_show_money_as_money_and_filter(site):
    rt, base, browser, ids = site
    browser.open(f"{base}/billing/invoices")
    invoices = browser.text("billing")
    assert ids["invoice"] in invoices and "€49.00" in invoices
    assert browser.evaluate("document.querySelector('#billing a[href$=\".pdf\"]').textContent") == (
        "invoice PDF"
    )
    browser.screenshot("billing-invoices.png")
    browser.open(f"{base}/billing/invoices?status=void")
    assert ids["invoice"] not in browser.text("billing")

    browser.open(f"{base}/billing/payments")
    assert "€49.00" in browser.text("billing")
    browser.screenshot("billing-payments.png")
    browser.open(f"{base}/billing/payments?customer=nobody")
    assert "none" in browser.text("billing")
    browser.open(f"{base}/billing/billing-runs?organization={ids['organization']}")
    runs = browser.text("billing")
    assert ids["billing_run"] in runs and ids["failed_run"] in runs
    browser.open(f"{base}/billing/billing-runs?organization=org_other&status=failed")
    assert "none" in browser.text("billing")
    browser.open(f"{base}/billing/billing-runs?customer={ids['customer']}")
    runs = browser.text("billing")  # a run's customer is its subscription's
    assert ids["billing_run"] in runs and ids["failed_run"] not in runs

    browser.open(f"{base}/billing/subscriptions")
    assert ids["subscription"] in browser.text("billing")
    browser.screenshot("billing-subscriptions.png")
    browser.open(f"{base}/billing/subscriptions/{ids['subscription']}")
    assert "€49.00" in browser.evaluate("document.body.innerText")
    browser.screenshot("billing-subscription.png")

    browser.open(f"{base}/billing/billing-runs")
    assert ids["billing_run"] in browser.text("billing")
    browser.screenshot("billing-runs.png")
    browser.open(f"{base}/billing/invoices/{ids['invoice']}")
    assert "€49.00" in browser.text("money")
    lines = browser.text("related-lineItems")  # lines have no currency column: the invoice's
    assert "price: €49.00" in lines and "4900" not in lines
    assert "amount: €49.00" in browser.text("related-payments")


def test_actions_go_through_a_confirmation_with_a_csrf_token(site):
    rt, base, browser, ids = site
    # cancel the delayed run: link -> confirmation page -> button
    browser.open(f"{base}/runs/{ids['later']}")
    browser.evaluate(
        "[...document.querySelectorAll('#actions a')].find(a => a.textContent.startsWith('Cancel')).click()"
    )
    browser.wait_for("!!document.getElementById('confirm')")
    assert browser.evaluate("document.querySelector('input[name=csrf]').value.length") == 64
    browser.screenshot("confirm-cancel.png")
    browser.evaluate("document.getElementById('confirm').click()")
    browser.wait_for(
        f"location.pathname === '/runs/{ids['later']}' && !document.getElementById('confirm')"
    )
    assert rt.store.get_run(ids["later"])["status"] == RunStatus.CANCELED

    # retry the failed billing run from its failed job's page: its period billed again
    browser.open(f"{base}/runs/{ids['failed_billing']}")
    browser.evaluate(
        "[...document.querySelectorAll('#actions a')].find(a => a.textContent.startsWith('Retry')).click()"
    )
    browser.wait_for("!!document.getElementById('confirm')")
    assert ids["failed_period"] in browser.evaluate("document.body.innerText")
    browser.screenshot("confirm-billing-retry.png")
    browser.evaluate("document.getElementById('confirm').click()")
    browser.wait_for(
        "location.pathname.startsWith('/billing/billing-runs/') && !location.pathname.endsWith('/retry')"
    )
    new_id = browser.evaluate("location.pathname").rsplit("/", 1)[1]
    assert new_id != ids["failed_run"]
    new = billing_run(rt, new_id)
    assert (new.status, new.attempt_number, new.billing_period_id) == (
        "scheduled",
        2,
        ids["failed_period"],
    )
    assert "attempt-billing-run" in browser.text("runs")  # queued to charge it now
    # a second retry charges the same waiting run; a paid one is refused with its reason
    again = _post_confirmed(base, f"/billing/billing-runs/{ids['failed_run']}/retry")
    assert again.rsplit("/", 1)[1] == new_id
    with pytest.raises(urllib.error.HTTPError) as refused:
        _post_confirmed(base, f"/billing/billing-runs/{ids['billing_run']}/retry")
    assert refused.value.code == 409
    assert "is succeeded; only a failed billing run is retried" in refused.value.read().decode()

    # a POST without the token, or with another form's token, is refused
    token = browser.evaluate(
        f"fetch('/runs/{ids['ok']}/replay').then(r => r.text())"
        '.then(t => /name="csrf" value="([0-9a-f]+)"/.exec(t)[1])'
    )
    for body in (b"confirm=yes", f"confirm=yes&csrf={'0' * 64}".encode()):
        request = urllib.request.Request(
            f"{base}/runs/{ids['ok']}/replay", data=body, method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
    other = urllib.request.Request(
        f"{base}/runs/{ids['ok']}/cancel", data=f"confirm=yes&csrf={token}".encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(other, timeout=10)
    assert refused.value.code == 403
    # retry is only for a failed billing task
    browser.open(f"{base}/runs/{ids['ok']}")
    assert "Retry this billing run" not in browser.text("actions")


def billing_run(rt, billing_run_id):
    from flowjobs.billing.models import BillingRun

    with rt.billing.unit() as s:
        return s.get(BillingRun, billing_run_id)


def _post_confirmed(base: str, path: str) -> str:
    """GET the confirmation form at `path`, POST it with its token; the page it lands on."""
    import re

    with urllib.request.urlopen(f"{base}{path}", timeout=10) as response:
        token = re.search(r'name="csrf" value="([0-9a-f]{64})"', response.read().decode()).group(1)
    request = urllib.request.Request(
        f"{base}{path}", data=f"confirm=yes&csrf={token}".encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return urllib.parse.urlparse(response.url).path


def test_password_is_asked_for_every_page_and_the_live_feed(sqlite_url, tmp_path):
    import base64

    from flowjobs.runtime import Runtime
    from tests.conftest import make_settings

    rt = Runtime(make_settings(sqlite_url, tmp_path))
    try:
        with serve(rt, tmp_path, password="s3cret") as base:
            for path in (
                "/",
                "/api/overview",
                "/runs",
                "/workers",
                "/billing/invoices",
                "/static/live.js",
            ):
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(f"{base}{path}", timeout=10)
                assert refused.value.code == 401, path
            request = urllib.request.Request(
                f"{base}/api/overview",
                headers={"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert b'"counts"' in response.read()
    finally:
        rt.close()
