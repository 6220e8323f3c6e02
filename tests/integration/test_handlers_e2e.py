"""Webhook handlers end to end (issue 13, "Handlers without tests"): a real event as a file
through `flowjobs replay-event` (a subprocess) and over HTTP through `flowjobs serve` (a
process), handled by `flowjobs run-worker --burst` (a process), on both backends —
`payment_intent.processing`, `payment_intent.requires_action`, Supabase `invoices:UPDATE` and
`memberships:INSERT`. (`charge.failed`, `setup_intent.succeeded` and `account.updated` are in
test_webhook_shapes; `events:INSERT` in the outbound webhook tests.)"""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from flowjobs.billing import setup
from flowjobs.billing.models import BillingRun, Invoice, Membership, Payment
from flowjobs.billing.runs import execute_billing_run
from flowjobs.webhooks.models import InboxEvent
from tests.billing_helpers import VISA, get, stripe_sections
from tests.cli_helpers import flowjobs
from tests.integration.test_notification_flows import (
    MEMBERS,
    organisation,
    processing_event,
    received,
    seeded_subscription,
    sepa_subscription,
    text,
)
from tests.integration.test_notifications import smtp  # noqa: F401  (fixture)
from tests.integration.test_webhooks_http import TOKEN, post, served, sign  # noqa: F401  (fixture)

THREE_DS = (
    "4000002500003155"  # localstripe: an off-session confirmation needs the customer (3-D Secure)
)


def replay_file(env, tmp_path, name: str, event: dict) -> dict:
    path = tmp_path / name
    path.write_text(json.dumps(event))
    result = flowjobs("replay-event", str(path), "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def deliver(base: str, event: dict, live: bool = False) -> dict:
    body = json.dumps(event).encode()
    if "table" in event:
        code, reply = post(f"{base}/webhooks/supabase", body, {"Authorization": f"Bearer {TOKEN}"})
    else:
        mode = "livemode" if live else "testmode"
        code, reply = post(f"{base}/webhooks/stripe/{mode}", body, sign(body))
    assert code == 200, reply
    return reply


def work(env, **extra) -> None:
    result = flowjobs("run-worker", "--burst", "--no-scheduler", env={**env, **extra}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def handled(rt, source: str) -> dict[str, dict]:
    """The handler run of each inbox row of `source` (by event id), with its parsed result."""
    with rt.billing.unit() as s:
        rows = list(s.exec(select(InboxEvent).where(InboxEvent.source == source)))
    runs = {}
    for row in rows:
        run = rt.store.get_run(row.run_id)
        runs[row.event_id or row.id] = {
            **run,
            "via": row.via,
            "result": json.loads(run["result"] or "null"),
        }
    return runs


def payment_of(rt, billing_run_id: str) -> Payment:
    with rt.billing.unit() as s:
        return s.exec(select(Payment).where(Payment.billing_run_id == billing_run_id)).one()


def test_payment_intent_processing_and_requires_action_from_a_file_and_over_http(
    served,
    smtp,
    localstripe_url,
    tmp_path,
):
    """`payment_intent.processing` (a SEPA debit clearing) puts the billing run, its payment and
    its invoice in awaiting confirmation and emails every member "Awaiting Payment Confirmation"
    (through SMTP); `payment_intent.requires_action` (3-D Secure, the real PaymentIntent
    localstripe holds) keeps the run charging with its payment `requires_action` and sends
    nothing. Each kind arrives once as a file (`replay-event`) and once over HTTP (`serve`)."""
    rt, env, base, proc = served
    port, mail = smtp()
    sepa_file, sepa_http = (sepa_subscription(rt, localstripe_url)[2] for _ in range(2))
    three_ds = []
    for _ in range(2):
        three_ds.append(seeded_subscription(rt, card=THREE_DS)[1])
    processing = {
        sepa_file: processing_event(rt, localstripe_url, sepa_file),
        sepa_http: processing_event(rt, localstripe_url, sepa_http),
    }
    action = {
        run: processing_event(rt, localstripe_url, run, status="requires_action")
        for run in three_ds
    }
    assert all(
        e["data"]["object"]["status"] == "requires_action" for e in action.values()
    )  # localstripe's own

    replay_file(env, tmp_path, "processing.json", processing[sepa_file])
    replay_file(env, tmp_path, "requires_action.json", action[three_ds[0]])
    deliver(base, processing[sepa_http])
    deliver(base, action[three_ds[1]])
    work(
        env,
        FLOWJOBS_MAIL_TRANSPORT="smtp",
        FLOWJOBS_MAIL_HOST="127.0.0.1",
        FLOWJOBS_MAIL_PORT=str(port),
    )

    runs = handled(rt, "stripe")
    assert sorted(r["via"] for r in runs.values()) == ["file", "file", "http", "http"]
    assert {r["status"] for r in runs.values()} == {"completed"}
    for run_id in (sepa_file, sepa_http):
        payment = payment_of(rt, run_id)
        assert get(rt, BillingRun, run_id).status == "awaiting_payment_confirmation"
        assert payment.status == "processing"
        assert get(rt, Invoice, payment.invoice_id).status == "awaiting_payment_confirmation"
    for run_id in three_ds:
        run = get(rt, BillingRun, run_id)
        assert (
            run.status == "started" and run.last_stripe_payment_intent_event_timestamp is not None
        )
        assert payment_of(rt, run_id).status == "requires_action"
    pending = sorted(r["result"]["detail"].split(" is ")[1] for r in runs.values())
    assert pending == ["processing", "processing", "requires_action", "requires_action"]
    emails = received(mail.messages)
    assert set(emails) == {"send-organization-awaiting-payment-confirmation-notification"}
    sent = emails["send-organization-awaiting-payment-confirmation-notification"]
    assert [rcpts for rcpts, _ in sent] == [
        sorted(MEMBERS)
    ] * 2  # one per processing payment, to everyone
    invoices = {
        get(rt, Invoice, payment_of(rt, r).invoice_id).invoice_number
        for r in (sepa_file, sepa_http)
    }
    assert {text(msg).split("for invoice #")[1].split(" ")[0] for _, msg in sent} == invoices
    assert proc.poll() is None


def paid_invoice(rt) -> tuple[str, str]:
    """A billing run charged at localstripe: its invoice paid, its payment succeeded (no receipt yet)."""
    _, run_id = seeded_subscription(rt, card=VISA)
    assert execute_billing_run(rt.billing, run_id, "run_inline").action == "charged"
    payment = payment_of(rt, run_id)
    assert payment.receipt_url is None
    return payment.invoice_id, payment.id


def invoice_update(invoice_id: str, old: str, new: str, **fields) -> dict:
    record = {
        "id": invoice_id,
        "status": new,
        "livemode": False,
        "invoice_number": "X-00000",
        "currency": "USD",
        "created_at": "2027-01-15T08:00:00.000Z",
        "memo": None,
        **fields,
    }
    return {
        "type": "UPDATE",
        "table": "invoices",
        "schema": "public",
        "record": record,
        "old_record": {**record, "status": old},
    }


def membership_insert(membership: Membership) -> dict:
    return {
        "type": "INSERT",
        "table": "memberships",
        "schema": "public",
        "old_record": None,
        "record": {
            "id": membership.id,
            "user_id": membership.user_id,
            "organization_id": membership.organization_id,
            "role": membership.role,
            "notification_preferences": {},
            "deactivated_at": None,
            "created_at": "2027-01-15T08:00:00.000Z",
        },
    }


def test_supabase_invoice_paid_and_member_inserted_from_a_file_and_over_http(served, tmp_path):
    """`invoices:UPDATE` into `paid` renders and stores the receipt of the invoice's payment
    (`receipt_url`, a real PDF); an update that is not a transition into paid does nothing.
    `memberships:INSERT` finds the new member's user and email (the newsletter is not built);
    one naming no known user is refused by `replay-event` with exit 2."""
    rt, env, base, proc = served
    (file_invoice, file_payment), (http_invoice, http_payment) = paid_invoice(rt), paid_invoice(rt)
    org_id, _, _ = organisation(rt)
    with rt.billing.unit() as s:
        from flowjobs.billing.models import Organization

        org = s.get(Organization, org_id)
        new_members = [
            setup.member(s, org, f"new{i}@acme.example", role="member") for i in range(2)
        ]
    work(env)  # what the charges triggered (invoice PDFs, emails) is done before the events arrive

    replay_file(env, tmp_path, "paid.json", invoice_update(file_invoice, "open", "paid"))
    replay_file(
        env, tmp_path, "still-paid.json", invoice_update(file_invoice, "paid", "paid", memo="PO 42")
    )
    replay_file(env, tmp_path, "member.json", membership_insert(new_members[0]))
    deliver(base, invoice_update(http_invoice, "awaiting_payment_confirmation", "paid"))
    deliver(base, membership_insert(new_members[1]))
    path = tmp_path / "nobody.json"
    nobody = membership_insert(new_members[0])
    nobody["record"]["user_id"] = "user_nobody"
    path.write_text(json.dumps(nobody))
    refused = flowjobs("replay-event", str(path), env=env)
    assert refused.returncode == 2 and "user user_nobody does not exist" in refused.stderr
    work(env)

    runs = list(handled(rt, "supabase").values())
    assert len(runs) == 5 and {r["status"] for r in runs} == {"completed"}
    results = sorted((r["via"], json.dumps(r["result"], sort_keys=True)) for r in runs)
    assert results == sorted(
        [
            (
                "file",
                json.dumps(
                    {
                        "result": "receipt requested",
                        "invoiceId": file_invoice,
                        "paymentId": file_payment,
                    },
                    sort_keys=True,
                ),
            ),
            (
                "file",
                json.dumps(
                    {"result": "ignored", "detail": "not a transition into paid"}, sort_keys=True
                ),
            ),
            (
                "http",
                json.dumps(
                    {
                        "result": "receipt requested",
                        "invoiceId": http_invoice,
                        "paymentId": http_payment,
                    },
                    sort_keys=True,
                ),
            ),
            (
                "file",
                json.dumps(
                    {
                        "userId": new_members[0].user_id,
                        "email": "new0@acme.example",
                        "newsletter": "not configured",
                    },
                    sort_keys=True,
                ),
            ),
            (
                "http",
                json.dumps(
                    {
                        "userId": new_members[1].user_id,
                        "email": "new1@acme.example",
                        "newsletter": "not configured",
                    },
                    sort_keys=True,
                ),
            ),
        ]
    )
    for payment_id in (file_payment, http_payment):
        payment = get(rt, Payment, payment_id)
        assert payment.receipt_url and payment.receipt_url.startswith("file://")
        pdf = rt.documents.read(payment.receipt_url)
        assert pdf.startswith(b"%PDF")
    assert proc.poll() is None


def test_retrieve_payment_method_reads_the_card_stripe_holds(make_runtime, localstripe_url):
    from flowjobs.adapters.stripe_gateway import StripeRequestError

    rt = make_runtime(**stripe_sections(localstripe_url))
    gateway = rt.billing.gateway
    customer = gateway.create_customer(False, email="ada@example.com", name="Ada Lovelace")
    pm_id, _, _ = gateway.attach_card(False, customer=customer, number="4000056655665556")
    method = gateway.retrieve_payment_method(False, pm_id)
    assert (method["id"], method["type"]) == (pm_id, "card")
    assert (method["card"]["brand"], method["card"]["last4"], method["card"]["country"]) == (
        "visa",
        "5556",
        "FR",
    )
    with pytest.raises(StripeRequestError):
        gateway.retrieve_payment_method(False, "pm_doesnotexist")
