"""Events of the wrong shape (issue 12 item 7): validated against flowjobs.webhooks.shapes
before anything is routed — exit 2 from `replay-event`, 400 (kept as `rejected` with the
reason) from `serve` — and real events of every routed kind still pass and are handled."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from flowjobs.billing.models import BillingRun, Organization
from flowjobs.webhooks import inbox, parse
from flowjobs.webhooks.models import InboxEvent
from flowjobs.webhooks.replay import read_incoming, replay, snapshot
from tests.billing_helpers import drain, get, stripe_sections
from tests.cli_helpers import cli_env
from tests.integration.test_webhooks_http import TOKEN, post, served, sign  # noqa: F401  (fixture)
from tests.integration.test_webhooks_malformed import run_cli
from tests.webhook_helpers import SECRET, real_events

PI = {
    "id": "evt_1Shape",
    "object": "event",
    "type": "payment_intent.succeeded",
    "livemode": False,
    "created": 1_800_000_000,
    "api_version": "2017-08-15",
    "data": {
        "object": {
            "id": "pi_1Shape",
            "object": "payment_intent",
            "status": "succeeded",
            "amount": 2500,
            "currency": "usd",
            "created": 1_800_000_000,
            "latest_charge": "ch_1Shape",
            "last_payment_error": None,
            "metadata": {"type": "checkout"},
        }
    },
}
CHARGE = {
    **PI,
    "id": "evt_1Charge",
    "type": "charge.failed",
    "data": {
        "object": {"id": "ch_1", "object": "charge", "payment_intent": "pi_1", "failure_code": None}
    },
}
ACCOUNT = {
    **PI,
    "id": "evt_1Account",
    "type": "account.updated",
    "data": {
        "object": {
            "id": "acct_1",
            "object": "account",
            "details_submitted": True,
            "requirements": {"currently_due": [], "past_due": []},
            "capabilities": {"transfers": "active"},
        }
    },
}
SETUP = {
    **PI,
    "id": "evt_1Setup",
    "type": "setup_intent.succeeded",
    "data": {"object": {"id": "seti_1", "object": "setup_intent", "payment_method": "pm_1"}},
}
ORG = {
    "type": "UPDATE",
    "table": "organizations",
    "schema": "public",
    "record": {"id": "org_1", "payouts_enabled": True},
    "old_record": {"id": "org_1", "payouts_enabled": False},
}


def changed(document: dict, path: str, value=None, remove=False) -> bytes:
    data = json.loads(json.dumps(document))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if remove:
        del node[last]
    else:
        node[last] = value
    return json.dumps(data).encode()


# (name, file bytes, words the error must contain) — each exited 1 (a crash) or 0 (accepted) before
WRONG = [
    ("data a string", changed(PI, "data", "oops"), '"data" must be an object'),
    ("data.object a string", changed(PI, "data.object", "pi_1"), '"data.object" must be an object'),
    (
        "metadata a list",
        changed(PI, "data.object.metadata", ["billingRunId"]),
        '"data.object.metadata" must be an object of at most 50 strings (got a list)',
    ),
    (
        "metadata value a number",
        changed(PI, "data.object.metadata.billingRunId", 7),
        '"data.object.metadata.billingRunId"',
    ),
    (
        "metadata of 51 keys",
        changed(PI, "data.object.metadata", {f"k{i}": "v" for i in range(51)}),
        '"data.object.metadata"',
    ),
    (
        "amount NaN",
        json.dumps(PI).replace('"amount": 2500', '"amount": NaN').encode(),
        "NaN is not a JSON number",
    ),
    (
        "amount Infinity",
        json.dumps(PI).replace('"amount": 2500', '"amount": -Infinity').encode(),
        "-Infinity is not a JSON number",
    ),
    (
        "amount 1e400",
        json.dumps(PI).replace('"amount": 2500', '"amount": 1e400').encode(),
        "1e400 is too large",
    ),
    (
        "amount a float",
        changed(PI, "data.object.amount", 2500.5),
        '"data.object.amount" must be an amount',
    ),
    (
        "amount a string",
        changed(PI, "data.object.amount", "2500"),
        '"data.object.amount" must be an amount',
    ),
    (
        "amount true",
        changed(PI, "data.object.amount", True),
        '"data.object.amount" must be an amount',
    ),
    (
        "amount negative",
        changed(PI, "data.object.amount", -1),
        '"data.object.amount" must be an amount',
    ),
    (
        "amount huge",
        changed(PI, "data.object.amount", 10**30),
        '"data.object.amount" must be an amount',
    ),
    (
        "created in milliseconds past 9999",
        changed(PI, "created", 10**13),
        '"created" must be a Unix timestamp',
    ),
    ("created a float", changed(PI, "created", 1.8e9), '"created" must be a Unix timestamp'),
    ("livemode a string", changed(PI, "livemode", "false"), '"livemode" must be true or false'),
    ("account a number", changed(PI, "account", 5), '"account" must be a Connect account id'),
    (
        "status unknown",
        changed(PI, "data.object.status", "paid"),
        '"data.object.status" must be a PaymentIntent status',
    ),
    (
        "status missing",
        changed(PI, "data.object.status", remove=True),
        '"data.object.status" is missing',
    ),
    (
        "latest_charge a number",
        changed(PI, "data.object.latest_charge", 3),
        '"data.object.latest_charge" must be a charge id or a charge object',
    ),
    (
        "latest_charge without id",
        changed(PI, "data.object.latest_charge", {"status": "failed"}),
        '"data.object.latest_charge.id" is missing',
    ),
    (
        "last_payment_error a string",
        changed(PI, "data.object.last_payment_error", "declined"),
        '"data.object.last_payment_error" must be an error object',
    ),
    (
        "PaymentIntent id with a NUL",
        changed(PI, "data.object.id", "pi_\x00"),
        '"data.object.id" must be a PaymentIntent id',
    ),
    ("event id with a NUL", changed(PI, "id", "evt_\x00"), '"id" must be an event id'),
    (
        "object of another kind",
        changed(PI, "data.object.object", "charge"),
        '"data.object.object" must be "payment_intent"',
    ),
    (
        "duplicate id key",
        json.dumps(PI)
        .replace('"id": "evt_1Shape"', '"id": "evt_1Shape", "id": "evt_2Shape"')
        .encode(),
        'duplicate key "id"',
    ),
    (
        "lone surrogate",
        json.dumps(PI).replace('"type": "checkout"', '"type": "\\udc00"').encode(),
        "lone surrogate",
    ),
    (
        "nested 80 levels in an unread field",
        json.dumps(PI)
        .replace('"last_payment_error": null', '"x": ' + "[" * 80 + "]" * 80)
        .encode(),
        "nested too deeply",
    ),
    (
        "charge.payment_intent a list",
        changed(CHARGE, "data.object.payment_intent", ["pi_1"]),
        '"data.object.payment_intent" must be a PaymentIntent id or object',
    ),
    (
        "charge failure_code a number",
        changed(CHARGE, "data.object.failure_code", 402),
        '"data.object.failure_code"',
    ),
    (
        "account capabilities a list",
        changed(ACCOUNT, "data.object.capabilities", ["transfers"]),
        '"data.object.capabilities"',
    ),
    (
        "account requirements.currently_due a string",
        changed(ACCOUNT, "data.object.requirements.currently_due", "tos"),
        '"data.object.requirements.currently_due" must be a list of strings',
    ),
    (
        "account details_submitted a string",
        changed(ACCOUNT, "data.object.details_submitted", "yes"),
        '"data.object.details_submitted" must be true or false',
    ),
    (
        "setup intent payment_method a number",
        changed(SETUP, "data.object.payment_method", 1),
        '"data.object.payment_method" must be a PaymentMethod id or object',
    ),
    (
        "supabase old_record a list",
        changed(ORG, "old_record", [{"id": "org_1"}]),
        '"old_record" must be an object',
    ),
    (
        "supabase old_record a string",
        changed(ORG, "old_record", "org_1"),
        '"old_record" must be an object',
    ),
    (
        "supabase payouts_enabled a string",
        changed(ORG, "record.payouts_enabled", "yes"),
        '"record.payouts_enabled" must be true or false',
    ),
    (
        "supabase record id a number",
        changed(ORG, "record.id", 1),
        '"record.id" must be a non-empty string',
    ),
    ("supabase record id with a NUL", changed(ORG, "record.id", "org_\x00"), '"record.id"'),
    (
        "supabase lone surrogate in the record",
        changed(ORG, "record.name", "\udc00"),
        "lone surrogate",
    ),
    (
        "supabase customer email a number",
        json.dumps(
            {
                "type": "INSERT",
                "table": "customers",
                "record": {"id": "c", "organization_id": "o", "email": 5, "name": "n"},
            }
        ).encode(),
        '"record.email"',
    ),
    (
        "supabase duplicate record key",
        json.dumps(ORG)
        .replace('"payouts_enabled": true', '"payouts_enabled": true, "payouts_enabled": false')
        .encode(),
        "duplicate key",
    ),
]


def test_wrong_shapes_are_refused_by_replay_event_with_the_field_named(
    sqlite_url, tmp_path, monkeypatch, capsys
):
    for key, value in cli_env(sqlite_url).items():
        if key.startswith("FLOWJOBS_"):
            monkeypatch.setenv(key, value)
    failures = []
    for i, (name, content, message) in enumerate(WRONG):
        path = tmp_path / f"wrong{i}.json"
        path.write_bytes(content)
        for extra in ([], ["--dry-run"]):
            code, _, err = run_cli(capsys, "replay-event", str(path), *extra)
            if code != 2 or message not in err or "Traceback" in err or "unexpected" in err:
                failures.append((name, extra, code, err[-400:]))
    assert failures == [], "\n".join(map(repr, failures))
    code, out, err = run_cli(capsys, "events", "list", "--json")
    assert (code, json.loads(out)) == (0, [])  # refused files store nothing
    code, out, err = run_cli(capsys, "runs", "list", "--json")
    assert (code, json.loads(out)) == (0, [])


def test_wrong_shapes_over_http_are_400_and_kept_as_rejected_with_the_reason(served):
    rt, _, base, proc = served
    stripe_url, supabase_url = f"{base}/webhooks/stripe/testmode", f"{base}/webhooks/supabase"
    cases = [
        (name, content, message)
        for name, content, message in WRONG
        if name
        in (
            "data a string",
            "metadata a list",
            "amount NaN",
            "duplicate id key",
            "lone surrogate",
            "nested 80 levels in an unread field",
            "created a float",
            "PaymentIntent id with a NUL",
            "supabase old_record a list",
            "supabase lone surrogate in the record",
            "supabase record id with a NUL",
        )
    ]
    assert len(cases) == 11
    replies = []
    for name, content, message in cases:
        if name.startswith("supabase"):
            code, reply = post(supabase_url, content, {"Authorization": f"Bearer {TOKEN}"})
        else:
            code, reply = post(stripe_url, content, sign(content))
        replies.append((name, code, reply))
        assert code == 400 and message in reply["error"], (name, code, reply)
    with rt.billing.unit() as s:
        rows = {r.id: r for r in s.exec(select(InboxEvent))}
    assert len(rows) == len(cases)
    for name, _, reply in replies:
        row = rows[reply["inboxId"]]
        assert (row.status, row.run_id, row.error) == ("rejected", None, reply["error"])
        assert (
            row.signature == "verified"
        )  # signed by Stripe's secret (or the Supabase token), yet not an event we read
    assert rt.store.list_runs(limit=10) == []
    assert proc.poll() is None


@pytest.fixture
def wrt(make_runtime, localstripe_url):
    sections = stripe_sections(localstripe_url)
    sections["stripe"]["webhook_secret"] = SECRET
    return make_runtime(**sections)


def test_real_events_of_every_routed_kind_pass_and_are_handled(wrt, localstripe_url):
    events = real_events(wrt, localstripe_url)
    results = {}
    # each handled before the next arrives, as they would be: charge.failed after its
    # PaymentIntent's, the invoice's move to paid after the payment that paid it
    later = ("charge.failed", "invoices:UPDATE")
    for kind in [*(k for k in events if k not in later), *later]:
        body = json.dumps(events[kind]).encode()
        results[kind] = replay(wrt.billing, wrt.settings, read_incoming(wrt.settings, body))
        drain(wrt)
    assert results["customer.created"].status == "ignored"
    assert all(r.status == "routed" for kind, r in results.items() if kind != "customer.created"), (
        results
    )
    handled = {kind: wrt.store.get_run(r.run_id) for kind, r in results.items() if r.run_id}
    assert {kind: run["status"] for kind, run in handled.items()} == {
        kind: "completed" for kind in handled
    }
    result = {kind: json.loads(run["result"]) for kind, run in handled.items()}
    paid = events["payment_intent.succeeded"]["data"]["object"]["metadata"]["billingRunId"]
    assert get(wrt, BillingRun, paid).status == "succeeded"
    failed = events["payment_intent.payment_failed"]["data"]["object"]["metadata"]["billingRunId"]
    assert get(wrt, BillingRun, failed).status == "failed"
    assert result["account.updated"]["onboardingStatus"] == "fully_onboarded"
    with wrt.billing.unit() as s:
        org = s.exec(
            select(Organization).where(Organization.stripe_account_id == "acct_1FuzzAccount")
        ).one()
        assert org.onboarding_status == "fully_onboarded"
    assert (
        result["setup_intent.succeeded"]["result"] == "ignored"
    )  # no checkout session for it here
    failed_payment = result["payment_intent.payment_failed"]["paymentId"]
    assert result["charge.failed"]["result"] == "ignored"  # the run's outcome settles its payment
    assert result["charge.failed"]["paymentId"] == failed_payment
    assert result["organizations:UPDATE"]["result"] == "notified"
    assert result["invoices:UPDATE"]["result"] == "receipt requested"
    assert result["customers:INSERT"]["valid"] is True


def test_an_event_stored_before_validation_fails_its_run_at_once_naming_the_field(wrt):
    """An event accepted by an older flowjobs, read back by its handler: the run fails cleanly
    with the reason (no retry, no AttributeError), and nothing else changes."""
    body = changed(PI, "data.object.metadata", ["billingRunId"])
    stored = parse.Incoming(
        "stripe", body, json.loads(body), {}, "evt_1Shape", "payment_intent.succeeded", False
    )
    routed = inbox.ingest(wrt.billing, stored, via="file")
    with wrt.billing.unit() as s:
        before = {k: v for k, v in snapshot(s).items() if k not in ("flowjobs_runs",)}
    drain(wrt)
    run = wrt.store.get_run(routed.run_id)
    assert run["status"] == "failed" and run["attempt"] == 1
    assert '"data.object.metadata" must be an object of at most 50 strings' in run["error"]
    assert "AttributeError" not in (run["error"] or "")
    with wrt.billing.unit() as s:
        assert {k: v for k, v in snapshot(s).items() if k not in ("flowjobs_runs",)} == before


def test_an_older_account_updated_delivered_late_does_not_undo_a_newer_one(make_runtime):
    """Stripe does not deliver in order: a retried `account.updated` from before the account
    finished onboarding set it back to partly onboarded."""
    from flowjobs.billing import setup
    from flowjobs.webhooks.stripe_handlers import account_updated

    rt = make_runtime()
    with rt.billing.unit() as s:
        org = setup.organization(s, "Acme")
        org.stripe_account_id = "acct_1"
        org_id = org.id

    def event(created: int, transfers: str) -> dict:
        obj = {**ACCOUNT["data"]["object"], "capabilities": {"transfers": transfers}}
        return {**ACCOUNT, "id": f"evt_{created}", "created": created, "data": {"object": obj}}

    def status() -> str | None:
        with rt.billing.unit() as s:
            return s.get(Organization, org_id).onboarding_status

    assert account_updated(rt.billing, event(1_800_000_100, "active"))["onboardingStatus"] == (
        "fully_onboarded"
    )
    late = account_updated(rt.billing, event(1_800_000_000, "inactive"))
    assert late["result"] == "ignored" and "was applied already" in late["detail"]
    assert status() == "fully_onboarded"
    account_updated(rt.billing, event(1_800_000_200, "inactive"))  # newer: applied
    assert status() == "unauthorized"
