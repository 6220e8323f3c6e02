"""Replaying stored webhook events: real Stripe events produced by localstripe for real
PaymentIntents, Supabase payloads, duplicates, signatures, modes and dry runs — both backends."""

from __future__ import annotations

import json
import re

import pytest
from sqlmodel import select

from flowjobs.billing.models import BillingRun, Invoice, Payment, Subscription
from flowjobs.billing.runs import _prepare, record_intent
from flowjobs.errors import BadInput
from flowjobs.webhooks.models import InboxEvent
from flowjobs.webhooks.replay import read_incoming, replay, snapshot
from tests.billing_helpers import DECLINING, drain, get, seed, stripe_sections
from tests.webhook_helpers import (
    SECRET,
    charged_but_unrecorded,
    event_for,
    signed_export,
    stripe_client,
)


@pytest.fixture
def wrt(make_runtime, localstripe_url):
    sections = stripe_sections(localstripe_url)
    sections["stripe"]["webhook_secret"] = SECRET
    return make_runtime(**sections)


def do_replay(rt, document, **options):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return replay(
        rt.billing,
        rt.settings,
        read_incoming(rt.settings, body, options.pop("source", None)),
        **options,
    )


def payment_of(rt, billing_run_id):
    with rt.billing.unit() as s:
        return s.exec(select(Payment).where(Payment.billing_run_id == billing_run_id)).one()


def test_replayed_payment_intent_succeeded_settles_the_billing_run(wrt, localstripe_url):
    seeded, charge = charged_but_unrecorded(wrt)
    event = event_for(localstripe_url, "payment_intent.succeeded", charge.payment_intent_id)
    first = do_replay(wrt, event)
    assert first.status == "routed" and first.task == "stripe-payment-intent-succeeded"
    assert first.signature == "unverified"
    drain(wrt)
    assert wrt.store.get_run(first.run_id)["status"] == "completed"
    run = get(wrt, BillingRun, seeded.billing_run_id)
    assert run.status == "succeeded" and run.last_stripe_payment_intent_event_timestamp is not None
    payment = payment_of(wrt, seeded.billing_run_id)
    assert (payment.status, payment.stripe_payment_intent_id) == (
        "succeeded",
        charge.payment_intent_id,
    )
    assert get(wrt, Invoice, payment.invoice_id).status == "paid"

    again = do_replay(wrt, event)
    assert again.duplicate and again.run_id == first.run_id
    forced = do_replay(wrt, event, force=True)
    assert forced.run_id != first.run_id and not forced.duplicate
    assert wrt.store.get_run(forced.run_id)["replay_of"] == first.run_id
    drain(wrt)
    assert (
        '"action": "skipped"' in wrt.store.get_run(forced.run_id)["result"]
    )  # a finished run stays finished
    with wrt.billing.unit() as s:
        assert len(list(s.exec(select(InboxEvent)))) == 2


def test_replayed_payment_failed_runs_the_failure_path(wrt, localstripe_url):
    seeded, charge = charged_but_unrecorded(wrt, card=DECLINING)
    assert charge.status == "requires_payment_method"
    event = event_for(localstripe_url, "payment_intent.payment_failed", charge.payment_intent_id)
    do_replay(wrt, event)
    drain(wrt)
    assert get(wrt, BillingRun, seeded.billing_run_id).status == "failed"
    assert payment_of(wrt, seeded.billing_run_id).status == "failed"
    assert (
        get(wrt, Subscription, seeded.subscription_id).status == "canceled"
    )  # its first payment failed


def test_replayed_payment_intent_canceled_aborts_the_run(wrt, localstripe_url):
    seeded = seed(wrt)
    charge = _prepare(wrt.billing, seeded.billing_run_id, "run_x")
    client = stripe_client(localstripe_url)
    method = get(
        wrt,
        __import__("flowjobs.billing.models", fromlist=["PaymentMethod"]).PaymentMethod,
        seeded.method_id,
    )
    intent = client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "customer": seeded.stripe_customer,
            "payment_method": method.stripe_payment_method_id,
            "metadata": {"billingRunId": seeded.billing_run_id},
        }
    )
    assert record_intent(wrt.billing, charge, intent.id, "run_x")  # as the run does first
    canceled = client.v1.payment_intents.cancel(intent.id).to_dict()
    assert canceled["status"] == "canceled"
    # localstripe emits no payment_intent.canceled event: wrap the real, canceled PaymentIntent in
    # the envelope Stripe sends
    event = {
        "id": "evt_canceled_1",
        "object": "event",
        "type": "payment_intent.canceled",
        "livemode": False,
        "created": canceled["created"] + 5,
        "api_version": "2017-08-15",
        "data": {"object": canceled},
    }
    do_replay(wrt, event)
    drain(wrt)
    assert get(wrt, BillingRun, seeded.billing_run_id).status == "aborted"
    assert get(wrt, Subscription, seeded.subscription_id).status == "past_due"


def test_supabase_payloads_route_by_table_and_type(wrt):
    seeded = seed(wrt)
    update = {
        "type": "UPDATE",
        "table": "organizations",
        "schema": "public",
        "record": {"id": seeded.org_id, "name": "Acme", "payouts_enabled": True},
        "old_record": {"id": seeded.org_id, "name": "Acme", "payouts_enabled": False},
    }
    result = do_replay(wrt, update)
    assert result.task == "organization-updated"
    drain(wrt)
    assert json.loads(wrt.store.get_run(result.run_id)["result"])["result"] == "notified"
    notices = wrt.store.list_runs(task="send-organization-payouts-enabled-notification")
    assert [json.loads(n["payload"]) for n in notices] == [{"organizationId": seeded.org_id}]
    assert do_replay(wrt, update).duplicate
    unknown = do_replay(
        wrt,
        {"type": "DELETE", "table": "prices", "schema": "public", "old_record": {"id": "price_1"}},
    )
    assert unknown.status == "ignored" and unknown.run_id is None
    nobody = {
        "type": "INSERT",
        "table": "memberships",
        "schema": "public",
        "old_record": None,
        "record": {"id": "mem_1", "organization_id": seeded.org_id, "role": "member"},
    }
    with pytest.raises(BadInput, match=r"names no user \(user_id is missing\)"):  # "user None"
        do_replay(wrt, nobody)


def test_signatures_and_modes(wrt, localstripe_url):
    _, charge = charged_but_unrecorded(wrt)
    event = event_for(localstripe_url, "payment_intent.succeeded", charge.payment_intent_id)
    assert do_replay(wrt, signed_export(event)).signature == "verified"
    with pytest.raises(BadInput, match="signature check failed"):
        do_replay(wrt, signed_export(event, secret="whsec_wrong"))
    with pytest.raises(BadInput, match="signature check failed"):
        do_replay(wrt, signed_export(event, tamper=True))
    # a stored export is replayed on purpose, at any age: its signature must match, and did
    # (it was refused five minutes after it had been received)
    old = signed_export({**event, "id": "evt_old_1"}, timestamp=1_600_000_000)  # years old
    assert do_replay(wrt, old).signature == "verified"
    with pytest.raises(BadInput, match="not signed"):
        do_replay(wrt, event, require_signature=True)
    live = {**event, "id": "evt_live_1", "livemode": True}
    with pytest.raises(
        BadInput, match="live-mode event cannot be processed by a test-mode configuration"
    ):
        do_replay(wrt, live)
    assert do_replay(wrt, live, allow_mode_mismatch=True).status == "routed"


def test_events_naming_missing_objects_are_refused_and_store_nothing(wrt, localstripe_url):
    _, charge = charged_but_unrecorded(wrt)
    event = event_for(localstripe_url, "payment_intent.succeeded", charge.payment_intent_id)
    event["data"]["object"]["metadata"]["billingRunId"] = "billing_run_missing"
    with pytest.raises(BadInput, match="billing run billing_run_missing"):
        do_replay(wrt, event)
    with pytest.raises(BadInput, match="organization org_missing does not exist"):
        do_replay(
            wrt,
            {
                "type": "UPDATE",
                "table": "organizations",
                "record": {"id": "org_missing"},
                "old_record": {},
            },
        )
    with wrt.billing.unit() as s:
        assert list(s.exec(select(InboxEvent))) == []


def test_dry_run_changes_nothing_and_reports_the_rows(wrt, localstripe_url):
    seeded, charge = charged_but_unrecorded(wrt)
    event = event_for(localstripe_url, "payment_intent.succeeded", charge.payment_intent_id)
    with wrt.billing.unit() as s:
        before = snapshot(s)
    report = do_replay(wrt, event, dry_run=True)
    with wrt.billing.unit() as s:
        assert snapshot(s) == before  # row for row
    changed = {(c["table"], c["change"]) for c in report.changes}
    assert {
        ("billing_runs", "update"),
        ("payments", "update"),
        ("invoices", "update"),
        ("webhook_events", "insert"),
        ("flowjobs_runs", "insert"),
    } <= changed
    run_change = next(c for c in report.changes if c["table"] == "billing_runs")
    assert run_change["id"] == seeded.billing_run_id and run_change["columns"]["status"] == [
        "started",
        "succeeded",
    ]
    assert report.result["action"] == "charged"
    # times as every command shows them: ISO UTC with milliseconds, a datetime or a job table's ms
    iso_time = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    assert iso_time.match(run_change["columns"]["completed_at"][1])
    job = next(c for c in report.changes if c["table"] == "flowjobs_runs")
    assert iso_time.match(job["columns"]["run_at"][1]) and job["columns"]["priority"][1] == 0


def test_a_dry_run_whose_handler_needs_a_missing_stripe_key_undoes_its_writes_and_says_so(
    rt, monkeypatch
):
    """Without a Stripe key a real replay only queues the handler, so a dry run must not fail
    either: the handler's writes before it called Stripe are rolled back to a savepoint, the
    event's and its run's rows are still shown, and why the handler did not run is said."""
    from flowjobs.billing import setup
    from flowjobs.webhooks import stripe_handlers
    from tests.cli_helpers import ROOT

    def writes_then_calls_stripe(b, event):
        with b.unit() as s:
            setup.organization(s, "Written before Stripe")
        return b.gateway.retrieve_intent_object(False, "pi_nope")

    monkeypatch.setitem(stripe_handlers.HANDLERS, "stripe-charge-failed", writes_then_calls_stripe)
    with rt.billing.unit() as s:
        before = snapshot(s)
    body = (ROOT / "examples" / "stripe-charge-failed.json").read_bytes()
    report = do_replay(rt, body, dry_run=True)
    assert report.result is None
    assert report.not_run == (
        "it calls Stripe, and this configuration has no Stripe test-mode API key "
        "([stripe] test_api_key or FLOWJOBS_STRIPE_TEST_API_KEY)"
    )
    assert sorted((c["table"], c["change"]) for c in report.changes) == [
        ("flowjobs_runs", "insert"),
        ("webhook_events", "insert"),
    ]  # no organizations row: undone with the handler
    with rt.billing.unit() as s:
        assert snapshot(s) == before


def test_a_handler_without_the_stripe_key_for_its_mode_fails_at_once(rt, monkeypatch):
    """No key is a configuration problem that retrying cannot mend: the run fails at once,
    saying so (it was retried for two hours), and `events replay` runs it again once the key
    is set."""
    from flowjobs.webhooks import stripe_handlers
    from tests.billing_helpers import drain
    from tests.cli_helpers import ROOT

    def calls_stripe(b, event):
        return b.gateway.retrieve_intent_object(False, "pi_nope")

    monkeypatch.setitem(stripe_handlers.HANDLERS, "stripe-charge-failed", calls_stripe)
    body = (ROOT / "examples" / "stripe-charge-failed.json").read_bytes()
    result = do_replay(rt, body)
    drain(rt)
    row = rt.store.get_run(result.run_id)
    assert (row["status"], row["attempt"]) == ("failed", 1), row
    assert "stripe.test_api_key: not set" in row["error"]
