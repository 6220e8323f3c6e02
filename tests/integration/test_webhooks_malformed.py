"""A corpus of malformed inputs — files for `replay-event`, requests for `flowjobs serve`: each
gets one clear message (exit 2 / HTTP 4xx), never a traceback, and the database stays
consistent: nothing routed, no run created."""

from __future__ import annotations

import base64
import json
import time

from sqlmodel import select

from flowjobs.webhooks.models import InboxEvent
from tests.cli_helpers import cli_env, flowjobs
from tests.integration.test_webhooks_http import TOKEN, post, served, sign  # noqa: F401  (fixture)

GOOD_EVENT = {
    "id": "evt_ok",
    "object": "event",
    "type": "payment_intent.succeeded",
    "livemode": False,
    "created": 1800000000,
    "data": {
        "object": {"id": "pi_1", "object": "payment_intent", "status": "succeeded", "metadata": {}}
    },
}


def event(**changes):
    data = json.loads(json.dumps(GOOD_EVENT))
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    return json.dumps(data).encode()


def export(**fields):
    base = {
        "format": "flowjobs-inbox-event/1",
        "source": "stripe",
        "headers": {},
        "body_base64": base64.b64encode(event()).decode(),
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


FILES = [
    ("empty file", b"", [], "is empty: expected a webhook event"),
    ("whitespace", b"   \n", [], "is empty: expected a webhook event"),
    ("truncated object", b"{", [], "not valid JSON"),
    ("truncated event", event()[:40], [], "not valid JSON"),
    ("null", b"null", [], "not a recognisable event"),
    ("array", b"[]", [], "not a recognisable event"),
    ("number", b"42", [], "not a recognisable event"),
    ("string", b'"evt_1"', [], "not a recognisable event"),
    ("not UTF-8", b"\xff\xfe\x00{", [], "not UTF-8"),
    ("empty object", b"{}", [], "not a recognisable event"),
    (
        "event without type",
        json.dumps({"object": "event", "id": "evt_1"}).encode(),
        [],
        "not a recognisable event",
    ),
    ("event without id", event(id=...), [], '"id" is missing'),
    ("id not an event id", event(id="pi_123"), [], "must be an event id"),
    ("id a number", event(id=7), [], "must be an event id"),
    ("type a number", event(type=5), [], '"type" must be an event type'),
    ("type empty", event(type=""), [], '"type" must be an event type'),
    ("data missing", event(data=...), [], '"data" is missing'),
    ("data.object a list", event(data={"object": []}), [], '"data.object" must be an object'),
    ("created missing", event(created=...), [], '"created" is missing'),
    ("created a string", event(created="yesterday"), [], '"created" must be a Unix timestamp'),
    (
        "supabase without record",
        json.dumps({"type": "INSERT", "table": "customers"}).encode(),
        [],
        '"record" must be an object',
    ),
    (
        "supabase record a list",
        json.dumps({"type": "INSERT", "table": "customers", "record": []}).encode(),
        [],
        '"record" must be an object',
    ),
    (
        "supabase record without id",
        json.dumps({"type": "INSERT", "table": "customers", "record": {"name": "x"}}).encode(),
        [],
        '"record.id" is missing',
    ),
    (
        "supabase without table",
        json.dumps({"type": "INSERT", "record": {"id": "x"}}).encode(),
        [],
        "not a recognisable event",
    ),
    (
        "supabase unknown operation",
        json.dumps({"type": "UPSERT", "table": "t", "record": {"id": "x"}}).encode(),
        [],
        "not a recognisable event",
    ),
    (
        "supabase empty table",
        json.dumps({"type": "INSERT", "table": "", "record": {"id": "x"}}).encode(),
        [],
        '"table" must be a table name',
    ),
    ("export with bad base64", export(body_base64="%%%"), [], "not a valid inbox export"),
    ("export without body", export(body_base64=...), [], "not a valid inbox export"),
    (
        "export /2 with /1's body key",
        export(format="flowjobs-inbox-event/2"),
        [],
        "not a valid inbox export",
    ),
    ("export format not a string", export(format=["x"]), [], "not a recognisable event"),
    (
        "export body not JSON",
        export(body_base64=base64.b64encode(b"{oops").decode()),
        [],
        "not valid JSON",
    ),
    (
        "export source mismatch",
        export(),
        ["--source", "supabase"],
        "does not match the export's source",
    ),
    ("stripe event as supabase", event(), ["--source", "supabase"], "not a Supabase payload"),
    (
        "supabase payload as stripe",
        json.dumps({"type": "INSERT", "table": "t", "record": {"id": "x"}}).encode(),
        ["--source", "stripe"],
        "not a Stripe event",
    ),
    (
        "unknown source",
        event(),
        ["--source", "paypal"],
        "--source must be one of: stripe, supabase (not 'paypal')",
    ),
    (
        "billing run that does not exist",
        event(
            data={
                "object": {
                    "id": "pi_1",
                    "object": "payment_intent",
                    "status": "succeeded",
                    "metadata": {"billingRunId": "billing_run_nope"},
                }
            }
        ),
        [],
        "billing_run_nope",
    ),
    (
        "organization that does not exist",
        json.dumps(
            {
                "type": "UPDATE",
                "table": "organizations",
                "record": {"id": "org_nope", "payouts_enabled": True},
                "old_record": {"id": "org_nope"},
            }
        ).encode(),
        [],
        "org_nope does not exist",
    ),
    (
        "invoice that does not exist",
        json.dumps(
            {
                "type": "UPDATE",
                "table": "invoices",
                "record": {"id": "inv_nope", "status": "paid"},
                "old_record": {"id": "inv_nope"},
            }
        ).encode(),
        [],
        "inv_nope does not exist",
    ),
    ("deeply nested", b"[" * 100000 + b"]" * 100000, [], "nested too deeply"),
    ("live event in test mode", event(livemode=True), [], "live-mode event"),
    ("unsigned with --require-signature", event(), ["--require-signature"], "not signed"),
    (
        "wrongly signed export",
        export(headers={"Stripe-Signature": "t=1,v1=deadbeef"}),
        [],
        "signature check failed",
    ),
    (
        "garbage signature header",
        export(headers={"Stripe-Signature": "nonsense"}),
        [],
        "signature check failed",
    ),
]


def run_cli(capsys, *args):
    """`flowjobs ARGS` in this process (the same entry point as the console script)."""
    import sys

    from flowjobs.cli.app import main

    capsys.readouterr()
    old, sys.argv = sys.argv, ["flowjobs", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_malformed_files_are_refused_clearly_and_store_nothing(
    sqlite_url, tmp_path, monkeypatch, capsys
):
    env = cli_env(sqlite_url, FLOWJOBS_STRIPE_WEBHOOK_SECRET="whsec_x")
    for key, value in env.items():
        if key.startswith("FLOWJOBS_"):
            monkeypatch.setenv(key, value)
    failures = []
    for i, (name, content, args, message) in enumerate(FILES):
        path = tmp_path / f"case{i}.json"
        path.write_bytes(content)
        code, _, err = run_cli(capsys, "replay-event", str(path), *args)
        if code != 2 or message not in err or "Traceback" in err:
            failures.append((name, code, err[-300:]))
    for name, args, message in [
        ("missing file", [str(tmp_path / "nope.json")], "cannot read"),
        ("a directory", [str(tmp_path)], "cannot read"),
    ]:
        result = flowjobs("replay-event", *args, env=env)  # as a subprocess too: the real command
        if result.returncode != 2 or message not in result.stderr:
            failures.append((name, result.returncode, result.stderr[-300:]))
    huge = tmp_path / "huge.json"
    huge.write_bytes(b"[" + b"0," * (6 * 1024 * 1024) + b"0]")
    code, _, err = run_cli(capsys, "replay-event", str(huge))
    if code != 2 or "larger than 10 MB" not in err:
        failures.append(("huge file", code, err[-300:]))
    assert failures == [], "\n".join(map(repr, failures))
    rows = json.loads(flowjobs("events", "list", "--json", env=env).stdout)
    runs = json.loads(flowjobs("runs", "list", "--json", env=env).stdout)
    assert rows == [] and runs == []
    assert len(FILES) + 3 >= 44


def test_a_refused_file_makes_no_database(tmp_path):
    """A real replay creates its database to store the event, but not for a file it refuses:
    the file is read and checked first. Standard input that is empty is named as such."""
    db = tmp_path / "not-yet.db"
    env = cli_env(f"sqlite:///{db}")
    empty, broken = tmp_path / "empty.json", tmp_path / "broken.json"
    empty.write_bytes(b"")
    broken.write_bytes(b'{"id": "evt_1",')
    first = flowjobs("replay-event", str(empty), env=env)
    second = flowjobs("replay-event", str(broken), env=env)
    piped = flowjobs("replay-event", "-", env=env, input="")
    assert first.returncode == 2 and f"{empty} is empty" in first.stderr
    assert second.returncode == 2 and f"{broken} is not valid JSON" in second.stderr
    assert piped.returncode == 2 and "standard input is empty" in piped.stderr
    assert not db.exists()


def _requests(base):
    stripe_url = f"{base}/webhooks/stripe/testmode"
    now = int(time.time())
    good = event(created=now)
    signed = lambda body: sign(body)  # noqa: E731
    auth = {"Authorization": f"Bearer {TOKEN}"}
    return [
        ("empty body", stripe_url, b"", signed(b""), 400),
        ("truncated JSON", stripe_url, good[:30], signed(good[:30]), 400),
        ("array", stripe_url, b"[]", signed(b"[]"), 400),
        ("not UTF-8", stripe_url, b"\xff\xfe", {"Stripe-Signature": "t=1,v1=00"}, 400),
        (
            "missing id",
            stripe_url,
            event(id=..., created=now),
            signed(event(id=..., created=now)),
            400,
        ),
        (
            "type a number",
            stripe_url,
            event(type=3, created=now),
            signed(event(type=3, created=now)),
            400,
        ),
        (
            "no data",
            stripe_url,
            event(data=..., created=now),
            signed(event(data=..., created=now)),
            400,
        ),
        ("wrong secret", stripe_url, good, sign(good, secret="whsec_other"), 400),
        ("stale signature", stripe_url, good, sign(good, timestamp=now - 7200), 400),
        ("garbage signature", stripe_url, good, {"Stripe-Signature": "t=abc"}, 400),
        ("signature without v1", stripe_url, good, {"Stripe-Signature": f"t={now}"}, 400),
        ("no signature", stripe_url, good, {}, 400),
        ("tampered body", stripe_url, good.replace(b"pi_1", b"pi_2"), signed(good), 400),
        ("live endpoint, test event", f"{base}/webhooks/stripe/livemode", good, signed(good), 400),
        ("deeply nested", stripe_url, b"[" * 30000 + b"]" * 30000, signed(b"[]"), 400),
        ("unknown mode", f"{base}/webhooks/stripe/staging", good, signed(good), 400),
        ("huge body", stripe_url, b"{" + b" " * 80_000 + b"}", signed(b"{}"), 413),
        ("GET on a webhook", stripe_url, None, {}, 405),
        ("unknown path", f"{base}/webhooks/paypal", good, {}, 404),
        ("supabase without token", f"{base}/webhooks/supabase", b"{}", {}, 401),
        (
            "supabase wrong token",
            f"{base}/webhooks/supabase",
            b"{}",
            {"Authorization": "Bearer nope"},
            401,
        ),
        (
            "supabase basic auth",
            f"{base}/webhooks/supabase",
            b"{}",
            {"Authorization": f"Basic {TOKEN}"},
            401,
        ),
        ("supabase bad JSON", f"{base}/webhooks/supabase", b"{", auth, 400),
        (
            "supabase no record",
            f"{base}/webhooks/supabase",
            json.dumps({"type": "INSERT", "table": "x"}).encode(),
            auth,
            400,
        ),
        (
            "supabase record without id",
            f"{base}/webhooks/supabase",
            json.dumps({"type": "INSERT", "table": "x", "record": {}}).encode(),
            auth,
            400,
        ),
        (
            "supabase unknown operation",
            f"{base}/webhooks/supabase",
            json.dumps({"type": "MERGE", "table": "x", "record": {"id": "1"}}).encode(),
            auth,
            400,
        ),
    ]


def test_malformed_requests_are_refused_and_the_server_keeps_serving(served):
    rt, _, base, proc = served
    failures = []
    cases = _requests(base)
    for name, url, body, headers, expected in cases:
        code, reply = post(url, body or b"", headers, method="GET" if body is None else "POST")
        if code != expected or ("error" not in reply and "text" not in reply):
            failures.append((name, code, reply))
    assert failures == []
    assert post(f"{base}/healthz", b"", method="GET")[0] == 200 and proc.poll() is None
    with rt.billing.unit() as s:
        rows = list(s.exec(select(InboxEvent)))
    assert all(r.status == "rejected" and r.run_id is None for r in rows)
    assert rt.store.list_runs(limit=10) == []
    assert len(cases) + len(FILES) >= 50
