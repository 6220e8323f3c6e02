"""The Stripe gateway's in-call retries, over real HTTP with the official SDK.

A scripted loopback HTTP server stands in for Stripe's failure modes (429 with Retry-After,
5xx, a decline, a refused request), which localstripe cannot produce on demand; the happy
paths run against localstripe in the billing tests.
"""

from __future__ import annotations

import threading

import pytest

from flowjobs.adapters.stripe_gateway import (
    StripeGateway,
    StripeOutcomeUnknown,
    StripeRequestError,
    StripeUnavailable,
    StripeUnreachable,
)
from flowjobs.config import StripeSettings
from tests.json_stub import JsonStub

INTENT = {
    "id": "pi_123",
    "object": "payment_intent",
    "status": "succeeded",
    "amount": 1000,
    "currency": "usd",
    "created": 1800000000,
    "latest_charge": {"id": "ch_1", "object": "charge", "status": "succeeded"},
}
DECLINE = {
    "error": {
        "type": "card_error",
        "code": "card_declined",
        "message": "Your card was declined.",
        "charge": "ch_declined",
        "payment_intent": {"id": "pi_declined", "object": "payment_intent"},
    }
}
DECLINED_INTENT = {
    **INTENT,
    "id": "pi_declined",
    "status": "requires_payment_method",
    "latest_charge": "ch_declined",
}


class Scripted(JsonStub):
    """Answers requests with the next scripted (status, headers, body); records what arrived.
    ("hold", status, body): answer only once the test releases it (after the client gave up)."""

    def __init__(self, script):
        self.script = list(script)
        self.released = threading.Event()
        super().__init__(self._next)

    def _next(self, request):
        status, headers, body = self.script.pop(0) if self.script else (500, {}, {"error": {}})
        if status == "hold":
            self.released.wait(30)
            status, headers, body = headers, {}, body
        return status, headers, body

    def __exit__(self, *exc):
        self.released.set()
        super().__exit__(*exc)


def gateway(url, waits, retries=3, timeout="30s"):
    settings = StripeSettings(
        test_api_key="sk_test_t",
        live_api_key="sk_live_l",
        api_base=url,
        max_retries=retries,
        timeout=timeout,
    )
    return StripeGateway(settings, sleep=waits.append)


def charge(gw, livemode=False):
    return gw.charge_off_session(
        livemode=livemode,
        amount=1000,
        currency="USD",
        customer="cus_1",
        payment_method="pm_1",
        metadata={"billingRunId": "br_1"},
        idempotency_key="billing-run:br_1",
    )


def test_429_and_5xx_are_retried_with_the_same_key_honouring_retry_after():
    script = [
        (429, {"Retry-After": "7"}, {"error": {"type": "rate_limit_error"}}),
        (503, {}, {"error": {"type": "api_error"}}),
        (200, {}, INTENT),
    ]
    waits = []
    with Scripted(script) as server:
        result = charge(gateway(server.url, waits))
    assert (result.status, result.payment_intent_id, result.charge_id) == (
        "succeeded",
        "pi_123",
        "ch_1",
    )
    assert [r["key"] for r in server.requests] == ["billing-run:br_1"] * 3
    assert waits[0] == 7.0 and 0 < waits[1] <= 8


def test_a_decline_is_an_outcome_never_a_retry():
    waits = []
    with Scripted([(402, {}, DECLINE), (200, {}, DECLINED_INTENT)]) as server:
        result = charge(gateway(server.url, waits))
    assert [r["method"] for r in server.requests] == ["POST", "GET"]  # one charge, then a read
    assert (result.status, result.charge_status, result.failure_code) == (
        "requires_payment_method",
        "failed",
        "card_declined",
    )
    assert result.payment_intent_id == "pi_declined" and waits == []


def test_giving_up_and_refusals_are_clear_errors():
    waits = []
    with Scripted([(500, {}, {"error": {"type": "api_error"}})] * 3) as server:
        with pytest.raises(StripeUnavailable, match="answered 500 after 3 tries"):
            charge(gateway(server.url, waits, retries=2))
    assert len(server.requests) == 3
    with Scripted(
        [
            (
                400,
                {},
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": "No such customer: 'cus_1'",
                    }
                },
            )
        ]
    ) as server:
        with pytest.raises(StripeRequestError, match="No such customer"):
            charge(gateway(server.url, []))
    assert len(server.requests) == 1


def test_the_key_follows_the_rows_livemode():
    with Scripted([(200, {}, INTENT), (200, {}, INTENT)]) as server:
        gw = gateway(server.url, [])
        charge(gw, livemode=False)
        charge(gw, livemode=True)
    assert [r["auth"] for r in server.requests] == ["Bearer sk_test_t", "Bearer sk_live_l"]


def test_an_answer_lost_after_sending_is_an_unknown_outcome_never_retried_in_the_call(caplog):
    waits = []
    with Scripted([("hold", 200, INTENT)]) as server:
        gw = gateway(server.url, waits, retries=3, timeout="500ms")
        with pytest.raises(
            StripeOutcomeUnknown,
            match=r"did not answer within 0.5s after the request was sent"
            r" \(timed out waiting for the answer\): its outcome is unknown",
        ):
            gw.confirm_payment_intent(
                False, "pi_1", idempotency_key="k:confirm", amount=1000, currency="USD"
            )
    assert len(server.requests) == 1 and waits == []  # a slow Stripe gets no second request
    assert "answer lost" in caplog.text and "outcome unknown" in caplog.text


def test_a_refused_connection_is_unreachable_and_retried_with_the_same_key(caplog):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nobody listens: refused
    waits = []
    with pytest.raises(
        StripeUnreachable,
        match=r"cannot reach Stripe at .* after 3 tries \(connection refused; nothing was sent\)$",
    ):
        charge(gateway(url, waits, retries=2))
    assert len(waits) == 2
    assert "Stripe unreachable" in caplog.text and "outcome unknown" not in caplog.text
    assert issubclass(StripeUnreachable, StripeUnavailable) and issubclass(
        StripeOutcomeUnknown, StripeUnavailable
    )


def test_create_confirm_and_cancel_send_what_stripe_expects():
    created = {**INTENT, "status": "requires_confirmation", "latest_charge": None}
    canceled = {**created, "status": "canceled"}
    with Scripted(
        [
            (200, {}, created),
            (200, {}, INTENT),
            (400, {}, {"error": {"type": "invalid_request_error", "message": "already succeeded"}}),
            (200, {}, INTENT),
            (200, {}, canceled),
        ]
    ) as server:
        gw = gateway(server.url, [])
        made = gw.create_payment_intent(
            livemode=False,
            amount=1000,
            currency="USD",
            customer="cus_1",
            payment_method="pm_1",
            metadata={"billingRunId": "br_1"},
            idempotency_key="billing-run:br_1:pym_1",
        )
        done = gw.confirm_payment_intent(
            False,
            made.payment_intent_id,
            idempotency_key="billing-run:br_1:pym_1:confirm",
            amount=1000,
            currency="USD",
        )
        moved_on = gw.cancel_payment_intent(False, "pi_123")  # refused: its current state instead
        gone = gw.cancel_payment_intent(False, "pi_123")
    assert (made.status, done.status, moved_on.status, gone.status) == (
        "requires_confirmation",
        "succeeded",
        "succeeded",
        "canceled",
    )
    create, confirm, cancel, _, _ = server.requests
    assert "confirm" not in create["body"] and create["key"] == "billing-run:br_1:pym_1"
    assert (
        confirm["path"] == "/v1/payment_intents/pi_123/confirm"
        and "off_session=true" in confirm["body"]
    )
    assert confirm["key"] == "billing-run:br_1:pym_1:confirm"
    assert cancel["path"] == "/v1/payment_intents/pi_123/cancel"


def test_network_failures_are_named_in_plain_words():
    """The chains the SDK raises (APIConnectionError ← requests ← urllib3 ← the socket's error),
    built from the real classes as they nest them: each is named in a few plain words, never
    urllib3's nested reprs — a connect timeout as such, never as a lost answer."""
    import socket

    import requests
    import stripe
    from urllib3.exceptions import (
        ConnectTimeoutError,
        MaxRetryError,
        NameResolutionError,
        NewConnectionError,
        ReadTimeoutError,
    )

    from flowjobs.adapters.stripe_gateway import _network_error

    def sdk(library_error: BaseException) -> BaseException:
        try:
            try:
                raise library_error
            except BaseException as exc:
                raise stripe.APIConnectionError(
                    "Unexpected error communicating with Stripe."
                ) from exc
        except stripe.APIConnectionError as outer:
            return outer

    def urllib3_error(cls, *args, cause: BaseException):
        try:
            try:
                raise cause
            except BaseException as exc:
                raise cls(*args) from exc
        except cls as made:
            return made

    url = "/v1/payment_intents"
    refused = urllib3_error(
        NewConnectionError, None, "Failed to establish", cause=ConnectionRefusedError(111, "no")
    )
    unresolved = urllib3_error(
        NameResolutionError,
        "stripe.invalid",
        None,
        socket.gaierror(-2, "Name or service not known"),
        cause=socket.gaierror(-2, "Name or service not known"),
    )
    connect_timeout = urllib3_error(
        ConnectTimeoutError, None, "timed out", cause=TimeoutError("timed out")
    )
    read_timeout = urllib3_error(
        ReadTimeoutError, None, url, "Read timed out.", cause=TimeoutError("timed out")
    )
    cases = {
        "connection refused": requests.ConnectionError(MaxRetryError(None, url, refused)),
        "the host name does not resolve (Name or service not known)": requests.ConnectionError(
            MaxRetryError(None, url, unresolved)
        ),
        "timed out connecting": requests.ConnectTimeout(MaxRetryError(None, url, connect_timeout)),
        "timed out waiting for the answer": requests.ReadTimeout(read_timeout),
        "connection reset by the server": ConnectionResetError(104, "Connection reset by peer"),
    }
    assert {words: _network_error(sdk(error)) for words, error in cases.items()} == {
        words: words for words in cases
    }
