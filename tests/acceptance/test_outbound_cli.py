"""`flowjobs endpoints …` and `flowjobs events deliveries|redeliver` through the command's entry
point (in this process, and a few as a subprocess, as a user would run them), against a
verifying receiver on loopback. Bad input: one line, a documented exit code
(flowjobs.errors.ExitStatus), never a traceback."""

from __future__ import annotations

import json
import time

import pytest

from flowjobs.outbound.emit import emit_event
from tests.billing_helpers import drain
from tests.cli_helpers import as_json, cli_env
from tests.cli_helpers import flowjobs as subprocess_flowjobs
from tests.integration.test_outbound_webhooks import deliveries, organisation
from tests.integration.test_webhooks_malformed import run_cli
from tests.outbound_receiver import Receiver, start, verify


@pytest.fixture
def receiver():
    r = Receiver(script=[400], default=200)
    server, thread = start(r)
    yield r
    r.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def rt(make_runtime):
    return make_runtime(pinned=False)


class Result:
    def __init__(self, code, out, err):
        self.returncode, self.stdout, self.stderr = code, out, err


def test_endpoints_and_deliveries_commands(rt, receiver, monkeypatch, capsys):
    env = cli_env(rt.db.url)
    for key, value in env.items():
        if key.startswith("FLOWJOBS_"):
            monkeypatch.setenv(key, value)

    def flowjobs(*args, env):  # in this process, through the same entry point
        return Result(*run_cli(capsys, *args))

    org_id, _ = organisation(rt)

    added = as_json(
        subprocess_flowjobs(
            "endpoints",
            "add",
            org_id,
            "--url",
            receiver.url,
            "--event-type",
            "payment.succeeded",
            "--description",
            "main",
            "--json",
            env=env,
        )
    )
    assert added["secret"].startswith("whsec_") and added["eventTypes"] == ["payment.succeeded"]
    [listed] = as_json(flowjobs("endpoints", "list", org_id, "--json", env=env))
    assert (
        listed["id"] == added["id"]
        and listed["secret"] != added["secret"]
        and listed["enabled"] is True
    )

    tested = flowjobs(
        "endpoints", "test", org_id, "--json", env=env
    )  # the receiver answers 400 first
    assert tested.returncode == 1 and json.loads(tested.stdout)[0]["status"] == 400
    tested = as_json(flowjobs("endpoints", "test", org_id, added["id"], "--json", env=env))
    assert tested[0]["ok"] and verify(
        added["secret"], receiver.requests[1].headers, receiver.requests[1].body, now=time.time()
    )
    assert receiver.requests[1].json["type"] == "webhook.test"

    rotated = as_json(
        flowjobs("endpoints", "rotate-secret", org_id, added["id"], "--json", env=env)
    )
    assert rotated["secret"] != added["secret"]

    with rt.billing.unit() as s:
        event = emit_event(
            s, "payment.succeeded", "payment", "pay_1", organization_id=org_id, livemode=False
        )
    drain(rt, queues=["webhooks"])
    request = receiver.wait_for(3)[2]
    assert verify(rotated["secret"], request.headers, request.body, now=time.time())
    assert not verify(added["secret"], request.headers, request.body, now=time.time())
    [row] = as_json(flowjobs("events", "deliveries", "--endpoint", added["id"], "--json", env=env))
    assert (row["eventId"], row["status"], row["lastStatusCode"], row["attempts"]) == (
        event.id,
        "succeeded",
        200,
        1,
    )
    assert as_json(flowjobs("events", "deliveries", "--status", "failed", "--json", env=env)) == []

    again = as_json(flowjobs("events", "redeliver", event.id, "--json", env=env))
    assert [a["endpointId"] for a in again] == [added["id"]]
    drain(rt, queues=["webhooks"])
    assert receiver.wait_for(4)[3].headers["webhook-id"] == request.headers["webhook-id"]
    assert deliveries(rt, event.id)[0].attempts == 2

    disabled = flowjobs("endpoints", "disable", org_id, added["id"], env=env)
    assert disabled.returncode == 0 and "disabled" in disabled.stdout
    refused = subprocess_flowjobs("events", "redeliver", event.id, env=env)
    assert refused.returncode == 2 and "no enabled endpoint" in refused.stderr

    for args, code, text in [
        (("endpoints", "add", org_id, "--url", "ftp://x"), 2, "--url must be"),
        (("endpoints", "add", org_id, "--url", "http://[::1/"), 2, "--url is not a valid URL"),
        (
            ("endpoints", "add", org_id, "--url", "http://bad..host/hook"),
            2,
            "--url has an invalid host name 'bad..host'",
        ),
        (
            ("endpoints", "add", org_id, "--url", receiver.url, "--event-type", "nope"),
            2,
            "unknown event type nope",
        ),
        (
            ("endpoints", "add", "org_missing", "--url", receiver.url),
            3,
            "organization org_missing does not exist",
        ),
        (("events", "deliveries", "--status", "lost"), 2, "--status must be one of"),
    ]:
        result = flowjobs(*args, env=env)
        assert result.returncode == code, (args, result.stderr)
        assert (
            result.stderr.startswith("error:")
            and text in result.stderr
            and "Traceback" not in result.stderr
        )
