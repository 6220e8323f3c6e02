"""A worker SIGKILLed in the middle of delivering an outbound webhook: the event still reaches
the merchant (at-least-once), with the same `webhook-id`, so the receiver can deduplicate.
Real worker processes and a real loopback receiver; both backends."""

from __future__ import annotations

import signal
import time

from flowjobs.outbound import endpoints
from flowjobs.outbound.emit import emit_event
from tests.cli_helpers import cli_env, flowjobs, start_worker, wait_until
from tests.integration.test_outbound_webhooks import deliveries, organisation
from tests.outbound_receiver import Receiver, start, verify


def test_a_worker_killed_mid_delivery_is_followed_by_a_redelivery_with_the_same_webhook_id(
    make_runtime, tmp_path
):
    rt = make_runtime(pinned=False)
    receiver = Receiver(script=["hang"], default=200)
    server, thread = start(receiver)
    try:
        org_id, _ = organisation(rt)
        endpoint = endpoints.add(rt.billing, org_id, receiver.url, livemode=False)
        with rt.billing.unit() as s:
            event = emit_event(
                s, "payment.succeeded", "payment", "pay_1", organization_id=org_id, livemode=False
            )
        [delivery] = deliveries(rt, event.id)

        config = tmp_path / "outbound.toml"
        config.write_text('[webhooks.outbound]\ntimeout = "60s"\nretry_schedule = ["1s", "1s"]\n')
        env = cli_env(
            rt.db.url,
            FLOWJOBS_CONFIG=str(config),
            FLOWJOBS_WORKER_LEASE="1s",
            FLOWJOBS_WORKER_RESCUE_INTERVAL="100ms",
        )
        victim = start_worker("--no-scheduler", env=env, stderr_path=tmp_path / "victim.log")
        assert receiver.hanging.wait(60), "the worker never sent the delivery"
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
        receiver.release.set()  # the held request's connection is dropped, unanswered
        mid = deliveries(rt, event.id)[0]
        assert (mid.status, mid.attempts) == ("pending", 1)  # counted before the request left

        wait_until(
            lambda: rt.store.get_run(delivery.run_id)["lease_expires_at"] < time.time() * 1000,
            message="the killed worker's lease to expire",
        )
        survivor = flowjobs("run-worker", "--burst", "--no-scheduler", env=env, timeout=120)
        assert survivor.returncode == 0, survivor.stderr

        first, second = receiver.wait_for(2)
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.message_id
        assert first.body == second.body
        assert verify(endpoint.secret, second.headers, second.body, now=time.time())
        [done] = deliveries(rt, event.id)
        assert (done.status, done.attempts, done.last_status_code) == ("succeeded", 2, 200)
        assert [a["outcome"] for a in rt.store.attempts(delivery.run_id)] == [
            "crashed",
            "succeeded",
        ]
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
