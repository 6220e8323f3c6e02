"""One delivery attempt: sign, POST, record what the endpoint said.

- The body is the Standard Webhooks envelope `{"type", "timestamp", "data"}`; `data` is the
  event's payload (upstream sends the same payload to Svix), `timestamp` its `occurred_at`.
  The bytes are the same on every attempt; the signature's timestamp is the attempt's.
- The attempt is counted (and committed) before the request leaves, never inside a
  transaction held across the network call; the answer is recorded after it.
- `[webhooks.outbound] timeout` bounds the whole exchange after the connection (request, answer
  headers, the excerpt read), not each read.
- 2xx → `succeeded`. Any other status (3xx — redirects are not followed —, 4xx, 5xx), a
  timeout or a connection error → `retrying` (the run fails the attempt and the engine retries
  it on `[webhooks.outbound] retry_schedule`), or `failed` after the last attempt: as Svix, since
  a receiver mid-deploy answers 404 and one whose secret was just rotated 401, and the event
  used to be lost at once. Only 410 Gone → `failed` at once: the endpoint says it is gone.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from flowjobs.billing.models import Event
from flowjobs.config import OutboundWebhookSettings
from flowjobs.errors import AbortTaskRunError
from flowjobs.outbound import signing
from flowjobs.outbound.models import FINAL, WebhookDelivery, WebhookEndpoint
from flowjobs.store.text import storable

GONE = 410  # the one answer that ends a delivery at once


class DeliveryFailed(Exception):
    """A retryable failure: the engine tries the run again after its schedule's delay."""


@dataclass
class Answer:
    status: int | None  # None: no HTTP answer (connection error, timeout)
    latency_ms: int
    excerpt: str | None = None
    error: str | None = None
    final: bool = False  # a failure that another attempt would meet again (a host no DNS takes)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        if self.final:
            return False
        return self.status != GONE


def body_of(event: Event) -> bytes:
    envelope = {
        "type": event.type,
        "timestamp": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": event.payload,
    }
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def post(
    url: str, body: bytes, headers: dict[str, str], settings: OutboundWebhookSettings
) -> Answer:
    parts = urlsplit(url)
    started = time.monotonic()
    if not parts.hostname:  # endpoints are checked when they are added (endpoints.py)
        return Answer(None, 0, error=f"no host in the URL {url!r}")
    conn: http.client.HTTPConnection | None = None
    cut = threading.Event()
    try:
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                parts.hostname,
                parts.port,
                timeout=settings.connect_timeout,
                context=ssl.create_default_context(),
            )
        else:
            conn = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=settings.connect_timeout
            )
        conn.connect()
        conn.sock.settimeout(settings.timeout)
        # `timeout` bounds the whole exchange, not each read: an endpoint sending its answer a
        # byte at a time held a worker thread for the run's timeout (an hour by default).
        watchdog = threading.Timer(settings.timeout, _cut, (conn.sock, cut))
        watchdog.daemon = True
        watchdog.start()
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request(
                "POST",
                path,
                body=body,
                headers={
                    **headers,
                    "content-type": "application/json",
                    "user-agent": settings.user_agent,
                },
            )
            response = conn.getresponse()
            limit = max(settings.response_excerpt, 1) * 4 + 4
            text = response.read(limit).decode("utf-8", "replace")
        finally:
            watchdog.cancel()
        if cut.is_set():  # the read finished as the watchdog cut it: not a whole answer
            raise TimeoutError(f"no complete answer within {settings.timeout:g} s")
        return Answer(response.status, _ms(started), text[: settings.response_excerpt])
    except (UnicodeError, http.client.InvalidURL) as exc:  # a host IDNA refuses (`bad..host`)
        return Answer(None, _ms(started), error=f"{type(exc).__name__}: {exc}", final=True)
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        if cut.is_set() and not isinstance(exc, TimeoutError):
            exc = TimeoutError(f"no complete answer within {settings.timeout:g} s")
        return Answer(
            None,
            _ms(started),
            error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
        )
    finally:
        if conn is not None:
            conn.close()


def _cut(sock: socket.socket, cut: threading.Event) -> None:
    """The watchdog's end of the exchange: the blocked read returns at once."""
    cut.set()
    try:  # the plain socket's shutdown: an SSL socket's own would unwrap TLS under the reader
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def deliver(
    b,
    settings: OutboundWebhookSettings,
    delivery_id: str,
    last_attempt: bool,
    run_id: str | None = None,
    *,
    attempt: int | None = None,
    replay_of: Callable[[], str | None] | None = None,
) -> dict:
    """One attempt of one delivery by run `run_id`; raises DeliveryFailed (retry) or
    AbortTaskRunError (no retry). `attempt`: the run's attempt number as its retry policy
    counts it (crashes left out), which sets the time of the next one; `replay_of`: asked
    only when `run_id` is not the delivery's run — the run it replays (`runs replay`), if any."""
    with b.unit() as s:
        # locked (PostgreSQL): two runs taking the delivery over at once (two replays of its
        # run, a replay and a redelivery) would both post
        delivery = s.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None:
            raise AbortTaskRunError(f"delivery {delivery_id} does not exist")
        if delivery.status in ("succeeded", "skipped"):
            return {"result": f"already {delivery.status}", "deliveryId": delivery.id}
        if _superseded(delivery, run_id):
            if replay_of is None or replay_of() != delivery.run_id:
                # `events redeliver` made a new run for it: this one neither posts nor settles
                return {"result": f"superseded by run {delivery.run_id}", "deliveryId": delivery.id}
            # `runs replay` of the delivery's run (`runs replay --status failed` after an
            # outage): the replay takes the delivery over. It used to complete "superseded"
            # and post nothing.
            delivery.run_id = run_id
        endpoint = s.get(WebhookEndpoint, delivery.endpoint_id)
        event = s.get(Event, delivery.event_id)
        if endpoint is None or not endpoint.enabled or event is None:
            delivery.status = "skipped"
            delivery.last_error = (
                "the event no longer exists"
                if event is None
                else "the endpoint was deleted"
                if endpoint is None
                else "the endpoint is disabled"
            )
            return {"result": "skipped", "deliveryId": delivery.id, "detail": delivery.last_error}
        now = s.info["now"]
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.status = "retrying" if delivery.attempts > 1 else "pending"
        url, secret, msg_id = endpoint.url, endpoint.secret, delivery.message_id
        body = body_of(event)
        timestamp = int(now.timestamp())
    answer = post(url, body, signing.headers(secret, msg_id, timestamp, body), settings)
    with b.unit() as s:
        delivery = s.get(WebhookDelivery, delivery_id, with_for_update=True)
        if _superseded(delivery, run_id):  # taken over while this one posted: the new run's
            return {  # record is not this run's to overwrite
                "result": f"superseded by run {delivery.run_id} during this attempt",
                "deliveryId": delivery.id,
                "status": answer.status,
            }
        delivery.last_status_code = answer.status
        delivery.last_latency_ms = answer.latency_ms
        delivery.response_excerpt = storable(answer.excerpt)  # the endpoint's text: NUL-safe
        delivery.last_error = storable(answer.error)
        if answer.ok:
            delivery.status = "succeeded"
            delivery.delivered_at = s.info["now"]
            delivery.next_attempt_at = None
            return {
                "result": "delivered",
                "deliveryId": delivery.id,
                "status": answer.status,
                "latencyMs": answer.latency_ms,
                "attempts": delivery.attempts,
            }
        what = f"HTTP {answer.status}" if answer.status is not None else answer.error
        if not answer.retryable or last_attempt:
            delivery.status = "failed"
            delivery.next_attempt_at = None
        else:
            delivery.status = "retrying"
            from flowjobs.outbound.retry import POLICY

            # the engine's delay after this attempt of the run (`delivery.attempts` counts
            # crashed attempts and every redelivery's too: it named the wrong time)
            delivery.next_attempt_at = s.info["now"] + timedelta(
                seconds=POLICY.delay_after(attempt if attempt is not None else delivery.attempts)
            )
        attempts = delivery.attempts
    message = f"delivery {delivery_id} to {url}: {what} (attempt {attempts})"
    if not answer.retryable:
        raise AbortTaskRunError(message + "; not retried")
    raise DeliveryFailed(message + ("; no attempt left" if last_attempt else "; retried"))


def _superseded(delivery: WebhookDelivery, run_id: str | None) -> bool:
    """Whether `run_id` is no longer the delivery's run: a redelivery's run replaced it, and
    the old one (still retrying on its schedule) neither posts again nor settles it."""
    return run_id is not None and delivery.run_id is not None and delivery.run_id != run_id


def settle_failed(b, delivery_id: str, error: str | None, run_id: str | None = None) -> dict:
    """The failure hook: a delivery whose run failed for good (attempts or crash budget used
    up, timed out, aborted) is `failed`, never left `pending` — unless a redelivery's run
    has taken it over since."""
    with b.unit() as s:
        delivery = s.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status in FINAL:
            return {"result": "nothing to settle", "deliveryId": delivery_id}
        if _superseded(delivery, run_id):
            return {"result": f"superseded by run {delivery.run_id}", "deliveryId": delivery_id}
        delivery.status = "failed"
        delivery.next_attempt_at = None
        delivery.last_error = delivery.last_error or error
        return {"result": "failed", "deliveryId": delivery_id}
