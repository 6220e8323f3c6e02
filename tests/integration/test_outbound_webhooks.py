"""Outbound event webhooks to merchants (issue 16 §3): Flowglad events delivered by flowjobs to
a real HTTP receiver on loopback that verifies each request with its own Standard Webhooks
implementation (tests/outbound_receiver.py). Both backends; the clock is pinned, so retries are
made due by moving it, not by sleeping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import select

from flowjobs.billing import setup
from flowjobs.billing.models import Event
from flowjobs.outbound import endpoints
from flowjobs.outbound.dispatch import schedule_deliveries
from flowjobs.outbound.emit import emit_event
from flowjobs.outbound.models import WebhookDelivery, WebhookEndpoint
from tests.billing_helpers import drain
from tests.outbound_receiver import Receiver, start, verify

FAST = {
    "webhooks": {
        "outbound": {"retry_schedule": ["5s", "5m"], "timeout": "5s", "connect_timeout": "2s"}
    }
}


@pytest.fixture
def receivers():
    started = []

    def make(*script, default=200) -> Receiver:
        receiver = Receiver(script=list(script), default=default)
        started.append((receiver, *start(receiver)))
        return receiver

    yield make
    for receiver, server, thread in started:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def ort(make_runtime):
    return make_runtime(**FAST)


def organisation(rt) -> tuple[str, str]:
    with rt.billing.unit() as s:
        org = setup.organization(s, "Acme Analytics")
        cust = setup.customer(s, org, email="ada@example.com", name="Ada Lovelace")
        return org.id, cust.id


def new_subscription(rt, customer_id: str) -> tuple[str, str]:
    """A subscription created through billing (spec §7.2), which writes `subscription.created`."""
    from flowjobs.billing.models import Customer, Organization

    with rt.billing.unit() as s:
        cust = s.get(Customer, customer_id)
        price = setup.plan(s, s.get(Organization, cust.organization_id), "Pro", 2500)
        sub, _, _ = setup.subscription(s, cust, price, None, start=s.info["now"])
        return sub.id, cust.external_id


def emit(
    rt, org_id: str, object_id: str, kind: str = "payment.succeeded", livemode: bool = False
) -> Event:
    with rt.billing.unit() as s:
        return emit_event(s, kind, "payment", object_id, organization_id=org_id, livemode=livemode)


def deliveries(rt, event_id: str | None = None) -> list[WebhookDelivery]:
    with rt.billing.unit() as s:
        query = select(WebhookDelivery)
        if event_id:
            query = query.where(WebhookDelivery.event_id == event_id)
        return list(s.exec(query.order_by(WebhookDelivery.created_at, WebhookDelivery.endpoint_id)))


def failing_once(rt, receivers):
    """An endpoint that answers 503, and one event delivered to it once: (the receiver, the
    event, its delivery record, `retrying`)."""
    org_id, _ = organisation(rt)
    receiver = receivers(default=503)
    endpoints.add(rt.billing, org_id, receiver.url, livemode=False)
    event = emit(rt, org_id, "pay_1")
    deliver_all(rt)
    [record] = deliveries(rt, event.id)
    return receiver, event, record


def deliver_all(rt):
    drain(rt, queues=["webhooks"])


def now_s(rt) -> float:
    return rt.clock.now_ms() / 1000


def test_a_billing_event_is_delivered_signed_once_to_each_matching_endpoint(ort, receivers):
    org_id, cust_id = organisation(ort)
    good, filtered_out, live, disabled = receivers(), receivers(), receivers(), receivers()
    target = endpoints.add(ort.billing, org_id, good.url, livemode=False)
    endpoints.add(
        ort.billing, org_id, filtered_out.url, livemode=False, event_types=["payment.failed"]
    )
    endpoints.add(ort.billing, org_id, live.url, livemode=True)
    off = endpoints.add(ort.billing, org_id, disabled.url, livemode=False)
    endpoints.set_enabled(ort.billing, org_id, off.id, False)

    sub_id, external_id = new_subscription(ort, cust_id)
    with ort.billing.unit() as s:
        event = s.exec(select(Event).where(Event.object_id == sub_id)).one()
    assert (
        event.type == "subscription.created" and event.processed_at is not None
    )  # scheduled with the event
    [delivery] = deliveries(ort, event.id)
    assert (delivery.endpoint_id, delivery.status, delivery.attempts) == (target.id, "pending", 0)

    deliver_all(ort)
    [request] = good.wait_for(1)
    assert verify(target.secret, request.headers, request.body, now=now_s(ort))
    assert request.headers["webhook-id"] == delivery.message_id
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "type": "subscription.created",
        "timestamp": "2027-01-15T08:00:00Z",
        "data": {
            "object": "subscription",
            "id": sub_id,
            "customer": {"id": cust_id, "externalId": external_id},
        },
    }
    [done] = deliveries(ort, event.id)
    assert (done.status, done.attempts, done.last_status_code, done.response_excerpt) == (
        "succeeded",
        1,
        200,
        "answer 200",
    )
    assert done.last_latency_ms is not None and done.delivered_at is not None
    assert ort.store.get_run(done.run_id)["status"] == "completed"
    assert filtered_out.requests == [] and live.requests == [] and disabled.requests == []

    # Triggered again — Supabase's events:INSERT, or a second dispatch — nothing is sent twice.
    from flowjobs.webhooks.supabase_handlers import event_inserted

    supabase = {
        "type": "INSERT",
        "table": "events",
        "schema": "public",
        "record": {"id": event.id, "type": event.type},
    }
    assert event_inserted(ort.billing, supabase)["result"] == "already_processed"
    with ort.billing.unit() as s:
        again = schedule_deliveries(ort.billing, s, s.get(Event, event.id))
    assert (again["scheduled"], again["alreadyScheduled"]) == (0, 1)
    deliver_all(ort)
    assert len(good.requests) == 1 and len(deliveries(ort, event.id)) == 1


def test_retries_after_500_and_a_dropped_connection_with_the_same_webhook_id(ort, receivers):
    org_id, _ = organisation(ort)
    receiver = receivers(500, "drop", 200)
    endpoint = endpoints.add(ort.billing, org_id, receiver.url, livemode=False)
    event = emit(ort, org_id, "pay_1")

    deliver_all(ort)
    assert verify(
        endpoint.secret, receiver.wait_for(1)[0].headers, receiver.requests[0].body, now=now_s(ort)
    )
    [first] = deliveries(ort, event.id)
    assert (first.status, first.attempts, first.last_status_code) == ("retrying", 1, 500)
    assert ort.store.get_run(first.run_id)["status"] == "retrying"
    ort.clock.advance(5)  # the schedule's first delay
    deliver_all(ort)
    assert verify(
        endpoint.secret, receiver.wait_for(2)[1].headers, receiver.requests[1].body, now=now_s(ort)
    )
    [second] = deliveries(ort, event.id)
    assert (second.status, second.attempts, second.last_status_code) == ("retrying", 2, None)
    assert "RemoteDisconnected" in second.last_error or "Connection" in second.last_error
    ort.clock.advance(300)
    deliver_all(ort)
    requests = receiver.wait_for(3)
    [done] = deliveries(ort, event.id)
    assert (done.status, done.attempts, done.last_status_code) == ("succeeded", 3, 200)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    assert verify(endpoint.secret, requests[2].headers, requests[2].body, now=now_s(ort))
    assert [int(r.headers["webhook-timestamp"]) - int(now_s(ort)) for r in requests] == [
        -305,
        -300,
        0,
    ]
    assert [a["outcome"] for a in ort.store.attempts(done.run_id)] == [
        "failed",
        "failed",
        "succeeded",
    ]


def test_an_answer_sent_a_byte_at_a_time_is_cut_at_the_timeout(make_runtime, receivers):
    """`timeout` bounds the whole answer: each byte arriving within it used to keep the worker
    thread reading for up to the run's timeout (an hour)."""
    rt = make_runtime(
        webhooks={"outbound": {"retry_schedule": ["5s"], "timeout": "1s", "connect_timeout": "2s"}}
    )
    org_id, _ = organisation(rt)
    receiver = receivers("trickle")
    endpoints.add(rt.billing, org_id, receiver.url, livemode=False)
    event = emit(rt, org_id, "pay_1")
    deliver_all(rt)
    [first] = deliveries(rt, event.id)
    assert (first.status, first.attempts, first.last_status_code) == ("retrying", 1, None)
    assert first.last_error == "TimeoutError: no complete answer within 1 s"
    assert first.last_latency_ms < 15_000  # the trickle lasts ~20 s; not a speed measure


def test_a_stored_endpoint_whose_host_cannot_be_resolved_fails_at_once(ort):
    """`endpoints add` refuses such a host now; one stored before is not retried for a day."""
    org_id, _ = organisation(ort)
    endpoint = endpoints.add(ort.billing, org_id, "http://good.example/hook", livemode=False)
    with ort.billing.unit() as s:
        s.get(WebhookEndpoint, endpoint.id).url = "http://bad..host/hook"
    event = emit(ort, org_id, "pay_1")
    deliver_all(ort)
    [done] = deliveries(ort, event.id)
    assert (done.status, done.attempts) == ("failed", 1)
    assert done.last_error.startswith("UnicodeError")
    assert ort.store.get_run(done.run_id)["status"] == "failed"


def test_only_410_gone_is_not_retried_and_the_last_failed_attempt_leaves_the_delivery_failed(
    ort, receivers
):
    org_id, _ = organisation(ort)
    refusing, broken = receivers(default=410), receivers(default=503)
    deploying = receivers(404, 401, 200)  # a receiver mid-deploy, then before its new secret
    endpoints.add(ort.billing, org_id, refusing.url, livemode=False, event_types=["payment.failed"])
    endpoints.add(
        ort.billing, org_id, broken.url, livemode=False, event_types=["payment.succeeded"]
    )
    endpoints.add(
        ort.billing, org_id, deploying.url, livemode=False, event_types=["customer.updated"]
    )
    refused = emit(ort, org_id, "pay_1", kind="payment.failed")
    unlucky = emit(ort, org_id, "pay_2", kind="payment.succeeded")
    lucky = emit(ort, org_id, "cust_1", kind="customer.updated")

    deliver_all(ort)
    ort.clock.advance(5)
    deliver_all(ort)
    ort.clock.advance(300)
    deliver_all(ort)
    assert len(refusing.wait_for(1)) == 1 and len(broken.wait_for(3)) == 3
    [no_retry] = deliveries(ort, refused.id)
    assert (
        no_retry.status,
        no_retry.attempts,
        no_retry.last_status_code,
        no_retry.response_excerpt,
    ) == ("failed", 1, 410, "answer 410")
    [late] = deliveries(ort, lucky.id)
    assert (late.status, late.attempts, late.last_status_code) == ("succeeded", 3, 200)
    assert [r.answered for r in deploying.wait_for(3)] == [404, 401, 200]
    run = ort.store.get_run(no_retry.run_id)
    assert run["status"] == "failed" and "not retried" in run["error"]
    [gave_up] = deliveries(ort, unlucky.id)
    assert (gave_up.status, gave_up.attempts, gave_up.last_status_code) == ("failed", 3, 503)
    assert ort.store.get_run(gave_up.run_id)["status"] == "failed"

    import io

    from flowjobs.http.dashboard.app import Dashboard

    page = b"".join(
        Dashboard(ort)(
            {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": "/events",
                "QUERY_STRING": "",
                "wsgi.input": io.BytesIO(),
            },
            lambda *a: None,
        )
    ).decode()
    assert (
        "Outbound deliveries" in page
        and no_retry.id in page
        and "answer 410" in page
        and "503" in page
    )

    from flowjobs.outbound.views import delivery_rows

    assert sorted(d["eventId"] for d in delivery_rows(ort.billing, status="failed")) == sorted(
        [refused.id, unlucky.id]
    )


def test_an_answer_with_a_nul_byte_is_recorded_and_not_sent_again(ort, receivers):
    # PostgreSQL's text cannot hold a NUL: the success could not be written, so the delivery
    # was retried (the merchant got it again) and finally marked failed
    org_id, _ = organisation(ort)
    receiver = receivers(default=200)
    receiver.text = b"ok\x00thanks"
    endpoints.add(
        ort.billing, org_id, receiver.url, livemode=False, event_types=["payment.succeeded"]
    )
    event = emit(ort, org_id, "pay_1")
    deliver_all(ort)
    ort.clock.advance(300)
    deliver_all(ort)
    [delivery] = deliveries(ort, event.id)
    assert (delivery.status, delivery.attempts, delivery.response_excerpt) == (
        "succeeded",
        1,
        "ok\\x00thanks",
    )
    assert len(receiver.requests) == 1


def test_a_rotated_secret_signs_from_then_on_and_the_old_one_stops_verifying(ort, receivers):
    org_id, _ = organisation(ort)
    receiver = receivers()
    endpoint = endpoints.add(ort.billing, org_id, receiver.url, livemode=False)
    old = endpoint.secret
    emit(ort, org_id, "pay_1")
    deliver_all(ort)
    rotated = endpoints.rotate_secret(ort.billing, org_id, endpoint.id)
    assert rotated.secret != old and rotated.secret.startswith("whsec_")
    emit(ort, org_id, "pay_2")
    deliver_all(ort)
    before, after = receiver.wait_for(2)
    assert verify(old, before.headers, before.body, now=now_s(ort))
    assert verify(rotated.secret, after.headers, after.body, now=now_s(ort))
    assert not verify(old, after.headers, after.body, now=now_s(ort))


def test_a_redelivery_during_retries_takes_the_delivery_over_from_the_old_run(ort, receivers):
    """The old run, still retrying on its schedule, posted beside the new one, and when it ran
    out of attempts its failure hook marked the delivery `failed` under the new run."""
    from flowjobs.outbound.dispatch import redeliver

    receiver, event, first = failing_once(ort, receivers)
    old_run = first.run_id
    assert ort.store.get_run(old_run)["status"] == "retrying"
    [again] = redeliver(ort.billing, ort.settings.webhooks.outbound, event.id)
    deliver_all(ort)
    receiver.wait_for(2)
    ort.clock.advance(5)  # both runs' next attempts are due (the schedule: 5 s, then 5 min)
    deliver_all(ort)
    receiver.wait_for(3)
    old = ort.store.get_run(old_run)
    assert old["status"] == "completed" and "superseded by run" in old["result"]
    assert ort.store.get_run(again["runId"])["status"] == "retrying"
    ort.clock.advance(300)
    deliver_all(ort)  # the new run's last attempt: failed for good, and the hook settles it
    assert len(receiver.wait_for(4)) == 4  # one post per attempt of the live run, none more
    [done] = deliveries(ort, event.id)
    assert (done.status, done.run_id, done.attempts) == ("failed", again["runId"], 4)


def test_a_replay_of_a_failed_delivery_run_takes_the_delivery_over_and_posts(
    make_runtime, receivers
):
    """`runs replay --status failed` after an outage: the replay completed "superseded by run
    <the failed one>" and posted nothing, with the default schedule's 8 attempts."""
    rt = make_runtime(webhooks={"outbound": {"retry_schedule": ["5s"], "timeout": "5s"}})
    org_id, _ = organisation(rt)
    receiver = receivers(503, 503, 200)
    endpoints.add(rt.billing, org_id, receiver.url, livemode=False)
    event = emit(rt, org_id, "pay_1")
    deliver_all(rt)
    rt.clock.advance(5)
    deliver_all(rt)
    [failed] = deliveries(rt, event.id)
    assert (failed.status, failed.attempts) == ("failed", 2)
    fresh = make_runtime(pinned=True)  # another process (the CLI), default [webhooks.outbound]
    fresh.settings.webhooks.outbound.retry_schedule = [5.0]
    replayed = fresh.client.replay(failed.run_id)
    assert fresh.store.get_run(replayed.id)["max_attempts"] == 2  # the configured schedule's
    deliver_all(rt)
    assert len(receiver.wait_for(3)) == 3
    [done] = deliveries(rt, event.id)
    assert (done.status, done.run_id, done.attempts) == ("succeeded", replayed.id, 3)


def test_next_attempt_at_is_when_the_engine_retries_the_run(ort, receivers):
    """It was counted from every attempt of the delivery (crashed ones, earlier runs'), so it
    named a later time than the run's own retry after a redelivery."""
    from flowjobs.core.clock import iso_datetime
    from flowjobs.outbound.dispatch import redeliver

    org_id, _ = organisation(ort)
    receiver = receivers(default=503)
    endpoint = endpoints.add(ort.billing, org_id, receiver.url, livemode=False)
    event = emit(ort, org_id, "pay_1")
    deliver_all(ort)
    ort.clock.advance(5)
    deliver_all(ort)
    ort.clock.advance(300)
    deliver_all(ort)  # three attempts: failed
    [again] = redeliver(ort.billing, ort.settings.webhooks.outbound, event.id, endpoint.id)
    deliver_all(ort)  # the new run's first attempt: retried after 5 s, not 5 min
    [record] = deliveries(ort, event.id)
    run = ort.store.get_run(again["runId"])
    assert record.attempts == 4 and run["status"] == "retrying"
    assert iso_datetime(record.next_attempt_at) == iso_datetime(
        datetime.fromtimestamp(run["run_at"] / 1000, UTC)
    )


def test_a_delivery_whose_run_was_canceled_is_shown_failed_not_retrying(ort, receivers):
    from flowjobs.outbound.views import delivery_rows

    _, event, record = failing_once(ort, receivers)
    assert ort.store.cancel(record.run_id, ort.clock.now_ms()) == "canceled"
    [row] = delivery_rows(ort.billing, event_id=event.id)
    assert (row["status"], row["nextAttemptAt"]) == ("failed", None)
    assert row["lastError"].startswith(f"its run {record.run_id} was canceled")
    assert row["lastError"].endswith(f"flowjobs events redeliver {event.id} sends it again")
    # listed by the status it is shown with
    assert [r["id"] for r in delivery_rows(ort.billing, status="failed")] == [row["id"]]
    assert delivery_rows(ort.billing, status="retrying") == []


def test_redeliver_sends_again_with_the_same_webhook_id(ort, receivers):
    from flowjobs.outbound.dispatch import redeliver

    org_id, _ = organisation(ort)
    receiver = receivers(410, 200)
    endpoint = endpoints.add(ort.billing, org_id, receiver.url, livemode=False)
    event = emit(ort, org_id, "pay_1")
    deliver_all(ort)
    assert deliveries(ort, event.id)[0].status == "failed"
    [again] = redeliver(ort.billing, ort.settings.webhooks.outbound, event.id, endpoint.id)
    deliver_all(ort)
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    [done] = deliveries(ort, event.id)
    assert (done.status, done.attempts, done.run_id) == ("succeeded", 2, again["runId"])


def test_a_charged_billing_run_and_a_cancellation_reach_the_merchant(
    make_runtime, localstripe_url, receivers
):
    """The events the billing flows write (payment.succeeded from the charge's outcome,
    subscription.canceled from the cancellation) are delivered; the subscription.created
    written before the endpoint existed is not (as with Svix)."""
    from flowjobs.billing.cancel import cancel_immediately
    from flowjobs.billing.models import Payment, Subscription
    from tests.billing_helpers import seed, stripe_sections

    rt = make_runtime(**FAST, **stripe_sections(localstripe_url))
    seeded = seed(rt)
    receiver = receivers()
    endpoint = endpoints.add(rt.billing, seeded.org_id, receiver.url, livemode=False)
    rt.trigger(
        "attempt-billing-run",
        {"billingRunId": seeded.billing_run_id},
        idempotency_key=f"attempt-billing-run:{seeded.billing_run_id}",
    )
    drain(rt)
    with rt.billing.unit() as s:
        cancel_immediately(rt.billing, s, s.get(Subscription, seeded.subscription_id))
    deliver_all(rt)
    paid, canceled = receiver.wait_for(2)
    assert all(verify(endpoint.secret, r.headers, r.body, now=now_s(rt)) for r in (paid, canceled))
    with rt.billing.unit() as s:
        payment = s.exec(
            select(Payment).where(Payment.subscription_id == seeded.subscription_id)
        ).one()
    assert (paid.json["type"], paid.json["data"]["id"]) == ("payment.succeeded", payment.id)
    assert (canceled.json["type"], canceled.json["data"]["id"]) == (
        "subscription.canceled",
        seeded.subscription_id,
    )
    assert [d.status for d in deliveries(rt)] == ["succeeded", "succeeded"]
    with rt.billing.unit() as s:
        assert all(e.processed_at is not None for e in s.exec(select(Event)))
