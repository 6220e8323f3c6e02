"""The only way flowjobs talks to Stripe: a small gateway over the official `stripe` SDK.

- The secret key is chosen by the row's `livemode` (`[stripe] test_api_key` / `live_api_key`);
  `[stripe] api_base` points the SDK at another server (localstripe in tests and the demo).
- In-call retries (tenacity): refused connections, 5xx and 429, honouring `Retry-After`. The
  idempotency key is the same on every try, so a retried charge is never a second charge.
  A card decline is a billing outcome (`ChargeResult` with status `requires_payment_method`),
  never retried here.
- Two network failures are told apart, in the error and in the log:
  `StripeUnreachable` — the request never left (connection refused, DNS, connect timeout):
  nothing happened at Stripe; `StripeOutcomeUnknown` — the request was sent and its answer was
  lost (read timeout, connection dropped mid-response): Stripe may have acted. The latter is
  not retried in the call (a slow Stripe is not helped by more requests): the billing run
  records it and the next attempt asks Stripe first (flowjobs.billing.runs).
- Charges are two requests: create the PaymentIntent unconfirmed (moves no money), record its
  id, then confirm it off-session. A PaymentIntent can be charged only once, so a confirmation
  repeated after Stripe forgot the idempotency key (24 h) can never charge twice.
- Only parameters both real Stripe and localstripe accept are sent (../shared/testing.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flowjobs.errors import ConfigError, FlowjobsError

log = logging.getLogger("flowjobs.stripe")


class StripeUnavailable(FlowjobsError):
    """Stripe could not be reached or kept failing; the run's attempt fails and is retried."""


class StripeUnreachable(StripeUnavailable):
    """The request never reached Stripe (connection refused, name not resolved, connect
    timeout): nothing happened there."""


class StripeOutcomeUnknown(StripeUnavailable):
    """The request was sent but its answer was lost (read timeout, connection dropped after
    sending): Stripe may or may not have acted on it. Ask Stripe before doing anything else."""


class StripeRequestError(FlowjobsError):
    """Stripe refused a request (bad parameters, unknown object, missing key)."""


@dataclass(frozen=True)
class ChargeResult:
    """What a PaymentIntent came to, in the terms outcome processing needs."""

    status: str  # PaymentIntent status: succeeded | requires_payment_method | processing | …
    payment_intent_id: str | None
    charge_id: str | None
    charge_status: str | None  # succeeded | failed | pending | None
    amount: int
    currency: str
    created: int | None = None  # PaymentIntent creation, epoch seconds
    failure_code: str | None = None
    failure_message: str | None = None


def _id(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return getattr(value, "id", None) or (value.get("id") if hasattr(value, "get") else None)


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def never_sent(exc: BaseException) -> bool:
    """Whether a connection error happened before the request could reach the server.

    The SDK wraps the HTTP library's exception (`raise APIConnectionError(...) from e`); a
    refused or unresolvable connection and a connect timeout mean nothing was sent. Anything
    else (a read timeout, a reset or a close after sending) may have reached Stripe."""
    import socket

    seen = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        name = type(cause).__name__
        if isinstance(cause, (ConnectionRefusedError, socket.gaierror)) or name in (
            "ConnectTimeout",
            "NewConnectionError",
            "NameResolutionError",
            "ConnectTimeoutError",
        ):
            return True
        if name in ("ReadTimeout", "ReadTimeoutError", "RemoteDisconnected", "ProtocolError"):
            return False
        for inner in getattr(cause, "args", ()):  # urllib3 keeps the reason in MaxRetryError.reason
            if isinstance(inner, BaseException) and id(inner) not in seen and never_sent(inner):
                return True
        reason = getattr(cause, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen and never_sent(reason):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _transient(exc: BaseException) -> bool:
    """Retried within the call: a refused connection, 429 and 5xx — never a lost answer."""
    import stripe

    if isinstance(exc, stripe.APIConnectionError):
        return never_sent(exc)
    if isinstance(exc, stripe.RateLimitError):
        return True
    status = getattr(exc, "http_status", None)
    return isinstance(exc, stripe.StripeError) and status is not None and status >= 500


class NoStripeKey(ConfigError):
    """No Stripe API key for this mode in the configuration (exit 2, as any configuration
    problem); a dry run tells it apart: a real replay only queues the handler and needs none."""

    def __init__(self, livemode: bool):
        self.livemode = livemode
        mode = "live_api_key" if livemode else "test_api_key"
        super().__init__(
            [f"stripe.{mode}: not set; put it in [stripe] or FLOWJOBS_STRIPE_{mode.upper()}"]
        )


class StripeGateway:
    def __init__(self, settings, sleep=None):
        self.settings = settings
        self._clients: dict[bool, Any] = {}
        self._sleep = sleep

    # -- plumbing ----------------------------------------------------------------------
    def client(self, livemode: bool):
        if livemode not in self._clients:
            import stripe

            key = self.settings.api_key(livemode)
            if not key:
                raise NoStripeKey(livemode)
            options: dict[str, Any] = {"max_network_retries": 0}
            if self.settings.api_base:
                options["base_addresses"] = {"api": self.settings.api_base}
            http = stripe.RequestsClient(timeout=self.settings.timeout) if _has_requests() else None
            if http is not None:
                options["http_client"] = http
            self._clients[livemode] = stripe.StripeClient(key, **options)
        return self._clients[livemode]

    def call(self, fn, *args, **kwargs):
        """`fn(*args, **kwargs)` with tenacity retries on transient failures."""
        import stripe
        from tenacity import (
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential_jitter,
        )

        base_wait = wait_exponential_jitter(multiplier=0.5, max=8, jitter=0.5)

        def wait(state):
            after = _retry_after(state.outcome.exception()) if state.outcome else None
            return after if after is not None else base_wait(state)

        retrying = Retrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=wait,
            retry=retry_if_exception(_transient),
            reraise=True,
            **({"sleep": self._sleep} if self._sleep else {}),
        )
        try:
            return retrying(fn, *args, **kwargs)
        except stripe.CardError:
            raise
        except stripe.StripeError as exc:
            tries = self.settings.max_retries + 1
            base = self.settings.api_base or "https://api.stripe.com"
            what = getattr(fn, "__qualname__", "request")
            if isinstance(exc, stripe.APIConnectionError):
                if never_sent(exc):
                    log.warning(
                        "Stripe unreachable at %s (%s): %s", base, what, _network_error(exc)
                    )
                    raise StripeUnreachable(
                        f"cannot reach Stripe at {base} after {tries} tries "
                        f"({_network_error(exc)}; nothing was sent)"
                    ) from exc
                log.warning(
                    "Stripe answer lost at %s (%s), outcome unknown: %s",
                    base,
                    what,
                    _network_error(exc),
                )
                raise StripeOutcomeUnknown(
                    f"Stripe at {base} did not answer within {self.settings.timeout:g}s after the request was "
                    f"sent ({_network_error(exc)}): its outcome is unknown"
                ) from exc
            if _transient(exc):
                raise StripeUnavailable(
                    f"Stripe at {base} answered {exc.http_status} after {tries} tries: "
                    f"{exc.user_message or 'server error'}"
                ) from exc
            raise StripeRequestError(
                f"Stripe refused the request: {exc.user_message or exc}"
            ) from exc

    # -- charges -----------------------------------------------------------------------
    def charge_off_session(
        self,
        *,
        livemode: bool,
        amount: int,
        currency: str,
        customer: str,
        payment_method: str,
        metadata: dict[str, str],
        idempotency_key: str,
        application_fee_amount: int | None = None,
        transfer_destination: str | None = None,
        on_behalf_of: str | None = None,
    ) -> ChargeResult:
        """Create and confirm a PaymentIntent off-session in one call, under one idempotency key."""
        import stripe

        params = _intent_params(
            amount,
            currency,
            customer,
            payment_method,
            metadata,
            application_fee_amount,
            transfer_destination,
            on_behalf_of,
        )
        params.update(confirm=True, off_session=True)
        client = self.client(livemode)
        try:
            intent = self.call(
                client.v1.payment_intents.create,
                params=params,
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            return self._declined(livemode, exc, amount, currency)
        return self._result(intent.to_dict())

    def create_payment_intent(
        self,
        *,
        livemode: bool,
        amount: int,
        currency: str,
        customer: str,
        payment_method: str,
        metadata: dict[str, str],
        idempotency_key: str,
        application_fee_amount: int | None = None,
        transfer_destination: str | None = None,
        on_behalf_of: str | None = None,
    ) -> ChargeResult:
        """Create a PaymentIntent without confirming it: no money moves until `confirm_payment_intent`."""
        params = _intent_params(
            amount,
            currency,
            customer,
            payment_method,
            metadata,
            application_fee_amount,
            transfer_destination,
            on_behalf_of,
        )
        client = self.client(livemode)
        intent = self.call(
            client.v1.payment_intents.create,
            params=params,
            options={"idempotency_key": idempotency_key},
        )
        return self._result(intent.to_dict())

    def confirm_payment_intent(
        self,
        livemode: bool,
        payment_intent_id: str,
        *,
        idempotency_key: str,
        amount: int,
        currency: str,
    ) -> ChargeResult:
        """Confirm off-session (the customer is not present). A decline is an outcome."""
        import stripe

        client = self.client(livemode)
        try:
            intent = self.call(
                client.v1.payment_intents.confirm,
                payment_intent_id,
                params={"off_session": True},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            return self._declined(livemode, exc, amount, currency, payment_intent_id)
        return self._result(intent.to_dict())

    def cancel_payment_intent(self, livemode: bool, payment_intent_id: str) -> ChargeResult:
        """Cancel a PaymentIntent that has not charged; when Stripe refuses because it moved on
        (succeeded, processing, already canceled), its current state is returned instead."""
        client = self.client(livemode)
        try:
            intent = self.call(client.v1.payment_intents.cancel, payment_intent_id)
        except StripeRequestError:
            return self.retrieve_payment_intent(livemode, payment_intent_id)
        return self._result(intent.to_dict())

    def retrieve_payment_intent(self, livemode: bool, payment_intent_id: str) -> ChargeResult:
        client = self.client(livemode)
        intent = self.call(client.v1.payment_intents.retrieve, payment_intent_id)
        return self._result(intent.to_dict())

    def retrieve_payment_method(self, livemode: bool, payment_method_id: str) -> dict:
        """The Stripe PaymentMethod object as a plain dict (type, billing details, and the
        instrument: card brand, last4, expiry, country …). An unknown id is a StripeRequestError."""
        client = self.client(livemode)
        return self.call(client.v1.payment_methods.retrieve, payment_method_id).to_dict()

    def retrieve_charge(self, livemode: bool, charge_id: str) -> dict:
        """The Stripe Charge as a plain dict (status, amount, created, failure code/message,
        payment method details): what a checkout payment is recorded from (spec §8.3)."""
        client = self.client(livemode)
        return self.call(client.v1.charges.retrieve, charge_id).to_dict()

    def retrieve_intent_object(self, livemode: bool, payment_intent_id: str) -> dict:
        """The PaymentIntent as a plain dict, metadata included (a failed charge names only its
        PaymentIntent; the metadata says which checkout session it pays)."""
        client = self.client(livemode)
        return self.call(client.v1.payment_intents.retrieve, payment_intent_id).to_dict()

    def _declined(
        self, livemode: bool, exc, amount: int, currency: str, known_intent: str | None = None
    ) -> ChargeResult:
        error = exc.error
        body = (exc.json_body or {}).get("error", {}) if isinstance(exc.json_body, dict) else {}
        intent_id = (
            known_intent
            or _id(getattr(error, "payment_intent", None))
            or _id(body.get("payment_intent"))
        )
        charge_id = _id(getattr(error, "charge", None)) or body.get("charge")
        if intent_id is None and charge_id:  # localstripe names only the charge
            charge = self.call(self.client(livemode).v1.charges.retrieve, charge_id)
            intent_id = _id(charge.to_dict().get("payment_intent"))
        created = None
        if intent_id:
            created = self.retrieve_payment_intent(livemode, intent_id).created
        return ChargeResult(
            "requires_payment_method",
            intent_id,
            charge_id,
            "failed",
            amount,
            currency.upper(),
            created,
            exc.code or "card_declined",
            exc.user_message or str(exc),
        )

    @staticmethod
    def _result(intent: dict) -> ChargeResult:
        charge = intent.get("latest_charge")
        error = intent.get("last_payment_error") or {}
        charge_status = (
            charge.get("status") if charge is not None and not isinstance(charge, str) else None
        )
        if isinstance(charge, str):
            charge_status = {"succeeded": "succeeded", "requires_payment_method": "failed"}.get(
                intent["status"]
            )
        return ChargeResult(
            intent["status"],
            intent["id"],
            _id(charge),
            charge_status,
            intent["amount"],
            str(intent["currency"]).upper(),
            intent.get("created"),
            (error.get("code") if hasattr(error, "get") else None)
            or (
                charge.get("failure_code")
                if charge is not None and not isinstance(charge, str)
                else None
            ),
            (error.get("message") if hasattr(error, "get") else None)
            or (
                charge.get("failure_message")
                if charge is not None and not isinstance(charge, str)
                else None
            ),
        )

    # -- set-up (demo seed, tests) -----------------------------------------------------
    def create_customer(
        self, livemode: bool, *, email: str, name: str, metadata: dict | None = None
    ) -> str:
        client = self.client(livemode)
        return self.call(
            client.v1.customers.create,
            params={"email": email, "name": name, "metadata": metadata or {}},
        ).id

    def attach_card(self, livemode: bool, *, customer: str, number: str) -> tuple[str, str, str]:
        """Create a card PaymentMethod, attach it; returns (id, last4, country)."""
        client = self.client(livemode)
        card = {"number": number, "exp_month": 12, "exp_year": 2035, "cvc": "123"}
        method = self.call(client.v1.payment_methods.create, params={"type": "card", "card": card})
        self.call(client.v1.payment_methods.attach, method.id, params={"customer": customer})
        details = method.to_dict().get("card") or {}
        return method.id, details.get("last4") or number[-4:], (details.get("country") or "US")

    def count_charges(self, livemode: bool, customer: str) -> dict[str, int]:
        """Charges of a customer by status (for tests and `demo` summaries)."""
        client = self.client(livemode)
        counts: dict[str, int] = {}
        for charge in self.call(
            client.v1.charges.list, params={"customer": customer, "limit": 100}
        ).data:
            counts[charge.status] = counts.get(charge.status, 0) + 1
        return counts


def _network_error(exc: BaseException) -> str:
    """What went wrong on the network, in plain words: the SDK's message is a generic paragraph
    and the HTTP library's a nest of reprs (`HTTPConnectionPool(host=…): Max retries exceeded …
    (Caused by NewConnectionError(…))`). The innermost cause names it: refused, unresolvable,
    reset, timed out; else that cause's own words."""
    import socket

    chain = _causes(exc)
    root, name = chain[-1], type(chain[-1]).__name__
    connecting = any("ConnectTimeout" in type(e).__name__ for e in chain)
    if isinstance(root, ConnectionRefusedError):
        return "connection refused"
    if isinstance(root, socket.gaierror):
        return f"the host name does not resolve ({root.strerror or root})"
    if isinstance(root, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(root, TimeoutError) or "Timeout" in name:  # urllib3: ConnectTimeoutError
        return "timed out " + ("connecting" if connecting else "waiting for the answer")
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    if root is exc:
        return str(exc).splitlines()[0]
    return f"{name}: {str(root).splitlines()[0] if str(root) else name}"


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions under it, outermost first, down to the deepest: through
    `__cause__`/`__context__`, urllib3's `.reason` and exceptions held in `.args` (requests
    keeps urllib3's error there)."""
    chain = [exc]
    seen = {id(exc)}
    while True:
        current = chain[-1]
        inner = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        inner += list(getattr(current, "args", ()))
        nxt = next((e for e in inner if isinstance(e, BaseException) and id(e) not in seen), None)
        if nxt is None:
            return chain
        seen.add(id(nxt))
        chain.append(nxt)


def _has_requests() -> bool:
    try:
        import requests  # noqa: F401
    except ImportError:
        return False
    return True


def _intent_params(
    amount: int,
    currency: str,
    customer: str,
    payment_method: str,
    metadata: dict[str, str],
    application_fee_amount: int | None,
    transfer_destination: str | None,
    on_behalf_of: str | None,
) -> dict[str, Any]:
    """The PaymentIntent fields both ways of charging send (Connect fields only when set)."""
    params: dict[str, Any] = {
        "amount": amount,
        "currency": currency.lower(),
        "customer": customer,
        "payment_method": payment_method,
        "metadata": metadata,
    }
    if application_fee_amount:
        params["application_fee_amount"] = application_fee_amount
    if transfer_destination:
        params["transfer_data"] = {"destination": transfer_destination}
    if on_behalf_of:
        params["on_behalf_of"] = on_behalf_of
    return params
