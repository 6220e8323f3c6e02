"""`flowjobs serve` as a real process: localstripe delivers signed webhooks to it, the workers
handle them; bad requests are refused (and kept) without ever taking the server down."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlmodel import select

from flowjobs.billing.models import BillingRun
from flowjobs.webhooks.models import InboxEvent
from tests.billing_helpers import get, seed, stripe_sections
from tests.cli_helpers import cli_env, flowjobs, serving, wait_until
from tests.webhook_helpers import SECRET

TOKEN = "supabase-token"


@pytest.fixture
def served(make_runtime, localstripe_url, tmp_path):
    sections = stripe_sections(localstripe_url)
    sections["stripe"]["webhook_secret"] = SECRET
    rt = make_runtime(pinned=False, **sections)
    env = cli_env(
        rt.db.url,
        FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_flowjobs",
        FLOWJOBS_STRIPE_API_BASE=localstripe_url,
        FLOWJOBS_STRIPE_WEBHOOK_SECRET=SECRET,
        FLOWJOBS_SUPABASE_WEBHOOK_TOKEN=TOKEN,
        FLOWJOBS_SERVER_MAX_BODY="64KB",
        FLOWJOBS_SERVER_TIMEOUT="2s",
    )
    with serving(env, tmp_path / "serve.log") as (proc, base):
        yield rt, env, base, proc


def post(url, body: bytes, headers=None, method="POST"):
    request = urllib.request.Request(
        url,
        data=body if method == "POST" else None,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())


def _json(data: bytes):
    try:
        return json.loads(data or b"{}")
    except ValueError:
        return {"text": data.decode("utf-8", "replace")}  # waitress's own 413 page


def sign(body: bytes, secret=SECRET, timestamp=None) -> dict:
    import stripe

    return {
        "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
            body.decode(), secret, timestamp=timestamp or int(time.time())
        )
    }


def inbox(rt):
    with rt.billing.unit() as s:
        return list(s.exec(select(InboxEvent).order_by(InboxEvent.received_at)))


def test_localstripe_delivers_signed_webhooks_and_workers_handle_them(served, localstripe_url):
    rt, env, base, _ = served
    hook = urllib.request.Request(
        f"{localstripe_url}/_config/webhooks/flowjobs",
        method="POST",
        data=f"url={base}/webhooks/stripe/testmode&secret={SECRET}".encode(),
    )
    urllib.request.urlopen(hook, timeout=10).close()
    seeded = seed(rt)
    assert flowjobs("trigger", "billing-run", seeded.billing_run_id, env=env).returncode == 0
    assert flowjobs("run-worker", "--burst", "--no-scheduler", env=env).returncode == 0
    run = get(
        rt, BillingRun, seeded.billing_run_id
    )  # charged inline; its webhook arrives ~1 s later
    assert run.status == "succeeded"

    def delivered():
        return [
            e
            for e in inbox(rt)
            if e.type == "payment_intent.succeeded"
            and json.loads(e.body)["data"]["object"]["id"] == run.stripe_payment_intent_id
        ]

    [event] = wait_until(delivered, message="localstripe to deliver payment_intent.succeeded")
    assert (event.signature, event.status, event.via) == ("verified", "routed", "http")
    assert flowjobs("run-worker", "--burst", "--no-scheduler", env=env).returncode == 0
    handled = rt.store.get_run(event.run_id)
    assert (
        handled["status"] == "completed" and '"action": "skipped"' in handled["result"]
    )  # already settled inline


def test_the_same_event_twice_is_one_run_and_bad_requests_are_refused_and_kept(
    served, localstripe_url
):
    rt, env, base, proc = served
    event = {
        "id": "evt_http_1",
        "object": "event",
        "type": "customer.created",
        "livemode": False,
        "created": int(time.time()),
        "data": {"object": {"id": "cus_1", "object": "customer"}},
    }
    body = json.dumps(event).encode()
    url = f"{base}/webhooks/stripe/testmode"
    first, again = post(url, body, sign(body)), post(url, body, sign(body))
    assert (
        first[0] == again[0] == 200
        and again[1]["duplicate"]
        and again[1]["inboxId"] == first[1]["inboxId"]
    )
    assert first[1]["status"] == "ignored"  # no handler for customer.created: stored, not run

    refused = [
        post(url, body, sign(body, secret="whsec_wrong")),
        post(url, body, sign(body, timestamp=int(time.time()) - 3600)),  # stale
        post(url, body.replace(b"cus_1", b"cus_2"), sign(body)),  # tampered
        post(url, body),  # unsigned
        post(
            f"{base}/webhooks/stripe/livemode", body, sign(body)
        ),  # a test event on the live endpoint
        post(url, b"{not json", sign(b"{not json")),
        post(url, body, {"Stripe-Signature": f"t={int(time.time())},v1=é"}),  # was a 500
        post(url, b"A" * 60_000),  # unsigned and large: kept in part
    ]
    assert [code for code, _ in refused] == [400] * 8, refused
    wrong_endpoint = json.dumps(refused[4][1])  # says where Stripe sends it, not a CLI flag
    assert "posted to the live-mode endpoint" in wrong_endpoint, wrong_endpoint
    assert "/webhooks/stripe/testmode" in wrong_endpoint and "--allow" not in wrong_endpoint
    assert post(f"{base}/webhooks/stripe/sandbox", body, sign(body))[0] == 400
    assert post(url, b"x" * 70_000, sign(b"x"))[0] == 413
    assert post(url, b"", method="GET")[0] == 405
    assert post(f"{base}/nope", b"{}")[0] == 404
    supabase = json.dumps(
        {"type": "INSERT", "table": "customers", "record": {"id": "cust_1"}}
    ).encode()
    assert post(f"{base}/webhooks/supabase", supabase)[0] == 401
    assert post(f"{base}/webhooks/supabase", supabase, {"Authorization": "Bearer wrong"})[0] == 401
    assert (
        post(f"{base}/webhooks/supabase", supabase, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    )
    assert post(f"{base}/healthz", b"", method="GET") == (200, {"status": "ok"})

    rows = inbox(rt)
    rejected = [r for r in rows if r.status == "rejected"]
    assert len(rejected) == 8 and all(
        r.error and r.run_id is None for r in rejected
    )  # the eight refused above
    assert any(r.signature_detail == "a Stripe-Signature not ASCII" for r in rejected)
    [large] = [r for r in rejected if r.body.startswith(b"AAAA")]
    assert large.body == b"A" * 8192
    assert large.headers["X-Flowjobs-Body-Bytes"] == "60000"
    assert [r.status for r in rows if r.source == "supabase"] == ["routed"]
    assert proc.poll() is None  # still serving


def test_a_slow_client_is_disconnected_while_others_are_served(served):
    import socket

    _, _, base, proc = served
    host, port = base.removeprefix("http://").split(":")
    slow = socket.create_connection((host, int(port)), timeout=30)
    slow.sendall(
        b"POST /webhooks/stripe/testmode HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
    )
    assert post(f"{base}/healthz", b"", method="GET")[0] == 200  # served while the slow one dawdles
    start = time.monotonic()
    assert slow.recv(1024) == b""  # closed by the server, never answered
    assert time.monotonic() - start < 20
    slow.close()
    assert proc.poll() is None


def test_serve_checkpoints_its_wal_back_into_the_database_when_stopped(tmp_path):
    """`serve` used to leave its connections (the webhook inbox's, through SQLAlchemy) open at
    exit, and its WAL with them; stopped by SIGTERM it now closes its runtime, so the last
    connection out folds the WAL back into the database file and removes it, as after any clean
    SQLite exit. (Without the close this test fails on the WAL left behind.)"""
    path = tmp_path / "served.db"
    env = cli_env(f"sqlite:///{path}", FLOWJOBS_SUPABASE_WEBHOOK_TOKEN=TOKEN)
    log = tmp_path / "serve.log"
    with serving(env, log) as (proc, base):
        url = f"{base}/webhooks/supabase"
        for n in range(150):
            body = json.dumps(
                {"type": "INSERT", "table": "customers", "record": {"id": f"cust_{n}"}}
            ).encode()
            assert post(url, body, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert Path(f"{path}-wal").stat().st_size > 0  # written, not yet folded back
    assert proc.returncode == 0, log.read_text()
    assert not Path(f"{path}-wal").exists(), log.read_text()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 150


def test_serve_says_at_start_which_routes_refuse_every_event_as_configured(tmp_path):
    # It started silently and then refused every webhook (400 unsigned, 401 no token): the
    # senders' retries were the first sign. Each route with nothing to check events with is
    # named at start, with the setting that opens it; a configured route is not.
    env = cli_env(f"sqlite:///{tmp_path / 'a.db'}", FLOWJOBS_STRIPE_TEST_WEBHOOK_SECRET=SECRET)
    log = tmp_path / "serve.log"
    with serving(env, log) as (proc, base):
        assert post(f"{base}/webhooks/supabase", b"{}")[0] == 401  # served after the notes

    def warnings() -> list[str]:  # serve's start-up warnings (its log: JSON, as piped to a file)
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        return [x["message"] for x in lines if "refuses every event" in x["message"]]

    assert warnings() == [
        "POST /webhooks/stripe/livemode refuses every event (400: not signed) until "
        "[stripe] webhook_secret is set",
        "POST /webhooks/supabase refuses every event (401) until [supabase] webhook_token is set",
    ]
    env.update(FLOWJOBS_STRIPE_WEBHOOK_SECRET=SECRET, FLOWJOBS_SUPABASE_WEBHOOK_TOKEN=TOKEN)
    with serving(env, log) as (proc, base):
        assert (
            post(f"{base}/webhooks/supabase", b"{}", {"Authorization": f"Bearer {TOKEN}"})[0] == 400
        )
    assert warnings() == []


def test_the_access_log_in_json_carries_the_request_as_fields(make_runtime, caplog):
    """`serve --log-format json`: each access-log line has the request as fields a log pipeline
    can filter on, not only in its message."""
    import logging
    from wsgiref.util import setup_testing_defaults

    from flowjobs.http.server import WebhookApp
    from flowjobs.logs import JsonFormatter

    app = WebhookApp(make_runtime())
    environ = {"PATH_INFO": "/healthz", "REMOTE_ADDR": "127.0.0.7"}
    setup_testing_defaults(environ)
    with caplog.at_level(logging.INFO, logger="flowjobs.access"):
        body = b"".join(app(environ, lambda status, headers, exc_info=None: None))
    [record] = [r for r in caplog.records if r.name == "flowjobs.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["message"].startswith("GET /healthz 200 ")
    assert {k: line[k] for k in ("method", "path", "status", "bytes", "remote")} == {
        "method": "GET",
        "path": "/healthz",
        "status": 200,
        "bytes": len(body),
        "remote": "127.0.0.7",
    }
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0


def test_serve_says_where_it_listens_whatever_the_log_level(tmp_path):
    """With `--port 0` the logged address is the only way to reach it: `--log-level warning`
    (or error) keeps that line."""
    env = cli_env(f"sqlite:///{tmp_path / 'a.db'}")
    for level in ("warning", "error"):
        log = tmp_path / f"serve-{level}.log"
        with serving(env, log, "--log-level", level) as (proc, base):
            with urllib.request.urlopen(f"{base}/healthz", timeout=10) as reply:
                assert reply.status == 200
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        assert [x["message"] for x in lines if x["level"] == "info"] == [f"listening on {base}"]


def test_refused_requests_are_pruned_after_their_retention(make_runtime, clock):
    """Anyone can send refused requests (each kept up to 8 KB); they were kept for ever. The
    store's pruner deletes them after `[retention] rejected`; accepted events stay."""
    from flowjobs.core.duties import prune_once
    from flowjobs.webhooks.inbox import record_rejected

    rt = make_runtime(retention={"rejected": "7d"})
    old = record_rejected(rt.billing, "stripe", b"{}", {}, "no Stripe-Signature header")
    routed = record_rejected(rt.billing, "stripe", b"{}", {}, "accepted later, say")
    with rt.billing.unit() as s:
        s.get(InboxEvent, routed).status = "routed"
    clock.advance(6 * 86400)
    recent = record_rejected(rt.billing, "stripe", b"{}", {}, "no Stripe-Signature header")
    clock.advance(86400 + 1)
    prune_once(rt.store, rt.clock, rt.settings.retention, pause=lambda _: None)
    remaining = {row.id for row in inbox(rt)}
    assert remaining == {routed, recent} and old not in remaining
