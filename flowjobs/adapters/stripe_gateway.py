"""The only way flowjobs talks to Stripe: a small gateway over the official `stripe` SDK.

- The secret key is chosen by the row's `livemode` (`[stripe] test_api_key` / `live_api_key`);
  `[stripe] api_base` points the SDK at another server (localstripe in tests and the demo).
- In-call retries (tenacity): connection errors, 5xx and 429, honouring `Retry-After`. The
  idempotency key is the same on every try, so a retried charge is never a second charge.
  A card decline is a billing outcome (`ChargeResult` with status `requires_payment_method`),
  never retried here.
- Only parameters both real Stripe and localstripe accept are sent (../shared/testing.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowjobs.errors import FlowjobsError


class StripeUnavailable(FlowjobsError):
    """Stripe could not be reached or kept failing; the run's attempt fails and is retried."""


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


def _transient(exc: BaseException) -> bool:
    import stripe

    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)):
        return True
    status = getattr(exc, "http_status", None)
    return isinstance(exc, stripe.StripeError) and status is not None and status >= 500


class StripeGateway:
    def __init__(self, settings, sleep=None):
        self.settings = settings
        self._clients: dict[bool, Any] = {}
        self._sleep = sleep

    # -- plumbing ----------------------------------------------------------------------
    def client(self, livemode: bool):
        if livemode not in self._clients:
            import stripe

            key = self.settings.live_api_key if livemode else self.settings.test_api_key
            if not key:
                from flowjobs.errors import ConfigError

                mode = "live_api_key" if livemode else "test_api_key"
                raise ConfigError([f"stripe.{mode}: not set; put it in [stripe] or FLOWJOBS_STRIPE_{mode.upper()}"])
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
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

        base_wait = wait_exponential_jitter(multiplier=0.5, max=8, jitter=0.5)

        def wait(state):
            after = _retry_after(state.outcome.exception()) if state.outcome else None
            return after if after is not None else base_wait(state)

        retrying = Retrying(stop=stop_after_attempt(self.settings.max_retries + 1), wait=wait,
                            retry=retry_if_exception(_transient), reraise=True,
                            **({"sleep": self._sleep} if self._sleep else {}))
        try:
            return retrying(fn, *args, **kwargs)
        except stripe.CardError:
            raise
        except stripe.StripeError as exc:
            if _transient(exc):
                tries = self.settings.max_retries + 1
                base = self.settings.api_base or "https://api.stripe.com"
                if isinstance(exc, stripe.APIConnectionError):
                    raise StripeUnavailable(f"cannot reach Stripe at {base} after {tries} tries "
                                            "(connection failed)") from exc
                raise StripeUnavailable(f"Stripe at {base} answered {exc.http_status} after {tries} tries: "
                                        f"{exc.user_message or 'server error'}") from exc
            raise StripeRequestError(f"Stripe refused the request: {exc.user_message or exc}") from exc

    # -- charges -----------------------------------------------------------------------
    def charge_off_session(self, *, livemode: bool, amount: int, currency: str, customer: str,
                           payment_method: str, metadata: dict[str, str], idempotency_key: str,
                           application_fee_amount: int | None = None,
                           transfer_destination: str | None = None,
                           on_behalf_of: str | None = None) -> ChargeResult:
        """Create and confirm a PaymentIntent off-session in one call, under one idempotency key."""
        import stripe

        params: dict[str, Any] = {
            "amount": amount, "currency": currency.lower(), "customer": customer,
            "payment_method": payment_method, "confirm": True, "off_session": True,
            "metadata": metadata}
        if application_fee_amount:
            params["application_fee_amount"] = application_fee_amount
        if transfer_destination:
            params["transfer_data"] = {"destination": transfer_destination}
        if on_behalf_of:
            params["on_behalf_of"] = on_behalf_of
        client = self.client(livemode)
        try:
            intent = self.call(client.v1.payment_intents.create, params=params,
                               options={"idempotency_key": idempotency_key})
        except stripe.CardError as exc:
            return self._declined(livemode, exc, amount, currency)
        return self._result(intent.to_dict())

    def retrieve_payment_intent(self, livemode: bool, payment_intent_id: str) -> ChargeResult:
        client = self.client(livemode)
        intent = self.call(client.v1.payment_intents.retrieve, payment_intent_id)
        return self._result(intent.to_dict())

    def _declined(self, livemode: bool, exc, amount: int, currency: str) -> ChargeResult:
        error = exc.error
        body = (exc.json_body or {}).get("error", {}) if isinstance(exc.json_body, dict) else {}
        intent_id = _id(getattr(error, "payment_intent", None)) or _id(body.get("payment_intent"))
        charge_id = _id(getattr(error, "charge", None)) or body.get("charge")
        if intent_id is None and charge_id:  # localstripe names only the charge
            charge = self.call(self.client(livemode).v1.charges.retrieve, charge_id)
            intent_id = _id(charge.to_dict().get("payment_intent"))
        created = None
        if intent_id:
            created = self.retrieve_payment_intent(livemode, intent_id).created
        return ChargeResult("requires_payment_method", intent_id, charge_id, "failed", amount,
                            currency.upper(), created, exc.code or "card_declined",
                            exc.user_message or str(exc))

    @staticmethod
    def _result(intent: dict) -> ChargeResult:
        charge = intent.get("latest_charge")
        error = intent.get("last_payment_error") or {}
        charge_status = charge.get("status") if charge is not None and not isinstance(charge, str) else None
        if isinstance(charge, str):
            charge_status = {"succeeded": "succeeded", "requires_payment_method": "failed"}.get(intent["status"])
        return ChargeResult(
            intent["status"], intent["id"], _id(charge), charge_status, intent["amount"],
            str(intent["currency"]).upper(), intent.get("created"),
            (error.get("code") if hasattr(error, "get") else None) or
            (charge.get("failure_code") if charge is not None and not isinstance(charge, str) else None),
            (error.get("message") if hasattr(error, "get") else None) or
            (charge.get("failure_message") if charge is not None and not isinstance(charge, str) else None))

    # -- set-up (demo seed, tests) -----------------------------------------------------
    def create_customer(self, livemode: bool, *, email: str, name: str, metadata: dict | None = None) -> str:
        client = self.client(livemode)
        return self.call(client.v1.customers.create,
                         params={"email": email, "name": name, "metadata": metadata or {}}).id

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
        for charge in self.call(client.v1.charges.list, params={"customer": customer, "limit": 100}).data:
            counts[charge.status] = counts.get(charge.status, 0) + 1
        return counts


def _has_requests() -> bool:
    try:
        import requests  # noqa: F401
    except ImportError:
        return False
    return True
