"""The shapes of the events flowjobs reads: explicit pydantic models of exactly those fields.

Every event is checked against these models before it is stored as accepted and routed
(`parse.parse`), and the handlers read the validated models, never the raw dicts — so a
field a handler reads is a field checked here, with Stripe's documented type:

- ids are strings of letters, digits and `_` (at most 255 characters; event ids `evt_…`);
- amounts are integers (0 … 999 999 999 999: Stripe's amounts have at most 8 digits, 12 for
  a few zero-decimal currencies); `created` and other times are integer Unix seconds within
  years 1970–9999; booleans are booleans; currencies are three letters;
- metadata is an object of at most 50 string values (keys ≤ 40 characters, values ≤ 500);
- text is at most 5000 characters, with no NUL character (PostgreSQL cannot store one).

Validation is strict (pydantic strict mode): no coercion, so `"2500"`, `2500.0`, `true` are
not amounts. Fields flowjobs does not read are not looked at (Stripe adds fields freely).
A wrong shape raises `BadShape`, a `BadInput` whose message names the field.

Below the models, JSON itself is read strictly (`parse.load_json`): no duplicate keys, no
`NaN`/`Infinity`, no number too large for a float, no lone surrogate in a string, at most
`MAX_DEPTH` levels of nesting.
"""

from __future__ import annotations

import json
import re
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from flowjobs.errors import BadInput

MAX_DEPTH = 64  # Stripe events nest about 8 levels; Supabase records rarely more


class BadShape(BadInput):
    """An event whose JSON is well-formed but whose fields have the wrong types or values."""


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


Text = Annotated[str, StringConstraints(max_length=5000), AfterValidator(_storable)]
StripeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,255}$")]
EventId = Annotated[str, StringConstraints(pattern=r"^evt_[A-Za-z0-9_]{1,251}$")]
EventType = Annotated[
    str, StringConstraints(pattern=r"^[\x21-\x7e]{1,255}$")
]  # printable ASCII, no spaces
Timestamp = Annotated[int, Field(ge=0, le=253_402_300_799)]  # Unix seconds, 1970 … 9999-12-31
Amount = Annotated[int, Field(ge=0, le=999_999_999_999)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]
MetadataKey = Annotated[
    str, StringConstraints(min_length=1, max_length=40), AfterValidator(_storable)
]
MetadataValue = Annotated[str, StringConstraints(max_length=500), AfterValidator(_storable)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=50)]
TableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")]
RecordId = Annotated[
    str, StringConstraints(min_length=1, max_length=255), AfterValidator(_storable)
]


class Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


# ---- Stripe ---------------------------------------------------------------------------------


class EventData(Shape):
    object: dict[str, Any] = Field(description="an object")


class StripeEnvelope(Shape):
    """The event itself (`object: "event"`), for every type, routed or not."""

    object: Literal["event"] = Field(description='"event"')
    id: EventId = Field(description="an event id (evt_…)")
    type: EventType = Field(description="an event type such as payment_intent.succeeded")
    created: Timestamp = Field(description="a Unix timestamp (integer seconds)")
    livemode: bool | None = Field(None, description="true or false")
    account: StripeId | None = Field(None, description="a Connect account id (acct_…)")
    data: EventData = Field(description='an object with "object"')


class Ref(Shape):
    """An expandable field, expanded: only its id is read."""

    id: StripeId = Field(description="a Stripe id")


class PaymentError(Shape):
    code: Text | None = Field(None, description="an error code (text)")
    message: Text | None = Field(None, description="a message (text)")


class ChargeSummary(Shape):
    """A PaymentIntent's expanded `latest_charge`."""

    id: StripeId = Field(description="a charge id (ch_…)")
    status: Literal["succeeded", "pending", "failed"] | None = Field(
        None, description="succeeded, pending or failed"
    )
    failure_code: Text | None = Field(None, description="a failure code (text)")
    failure_message: Text | None = Field(None, description="a failure message (text)")


PaymentIntentStatus = Literal[
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "canceled",
    "succeeded",
]


class PaymentIntent(Shape):
    object: Literal["payment_intent"] = Field("payment_intent", description='"payment_intent"')
    id: StripeId = Field(description="a PaymentIntent id (pi_…)")
    status: PaymentIntentStatus = Field(description="a PaymentIntent status")
    amount: Amount = Field(
        0, description="an amount (integer, smallest currency unit, 0 … 999999999999)"
    )
    currency: Currency | None = Field(None, description="a three-letter currency code")
    created: Timestamp | None = Field(None, description="a Unix timestamp (integer seconds)")
    latest_charge: StripeId | ChargeSummary | None = Field(
        None, description="a charge id or a charge object"
    )
    last_payment_error: PaymentError | None = Field(None, description="an error object or null")
    metadata: Metadata = Field(default_factory=dict, description="an object of at most 50 strings")


class Charge(Shape):
    object: Literal["charge"] = Field("charge", description='"charge"')
    id: StripeId = Field(description="a charge id (ch_…)")
    payment_intent: StripeId | Ref | None = Field(None, description="a PaymentIntent id or object")
    failure_code: Text | None = Field(None, description="a failure code (text)")
    failure_message: Text | None = Field(None, description="a failure message (text)")
    amount: Amount | None = Field(None, description="an amount (integer, smallest currency unit)")
    amount_refunded: Amount | None = Field(
        None, description="an amount (integer, smallest currency unit)"
    )
    currency: Currency | None = Field(None, description="a three-letter currency code")


class Requirements(Shape):
    currently_due: list[Text] | None = Field(None, description="a list of strings")
    past_due: list[Text] | None = Field(None, description="a list of strings")


class TosAcceptance(Shape):
    date: Timestamp | None = Field(None, description="a Unix timestamp (integer seconds)")


class Account(Shape):
    object: Literal["account"] = Field("account", description='"account"')
    id: StripeId = Field(description="an account id (acct_…)")
    details_submitted: bool | None = Field(None, description="true or false")
    requirements: Requirements | None = Field(None, description="an object or null")
    tos_acceptance: TosAcceptance | None = Field(None, description="an object or null")
    capabilities: dict[Text, Text] | None = Field(
        None, description="an object of capability statuses"
    )


class SetupIntent(Shape):
    object: Literal["setup_intent"] = Field("setup_intent", description='"setup_intent"')
    id: StripeId = Field(description="a SetupIntent id (seti_…)")
    payment_method: StripeId | Ref | None = Field(None, description="a PaymentMethod id or object")


STRIPE_OBJECTS: dict[str, type[Shape]] = {
    "payment_intent.succeeded": PaymentIntent,
    "payment_intent.payment_failed": PaymentIntent,
    "payment_intent.canceled": PaymentIntent,
    "payment_intent.processing": PaymentIntent,
    "payment_intent.requires_action": PaymentIntent,
    "charge.failed": Charge,
    "charge.refunded": Charge,
    "setup_intent.succeeded": SetupIntent,
    "account.updated": Account,
}


class StripeEvent(BaseModel):
    """A validated event: its envelope and, for a routed type, its typed `data.object`."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    envelope: StripeEnvelope
    obj: Any = None  # one of STRIPE_OBJECTS' models, or None for a type flowjobs does not route

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def created(self) -> int:
        return self.envelope.created


def stripe_event(data: Any) -> StripeEvent:
    """Validate a Stripe event; raise BadShape naming the first wrong fields."""
    if not isinstance(data, dict):
        raise BadShape(f"not a Stripe event: expected a JSON object, got {_kind(data)}")
    envelope = _validate(StripeEnvelope, data, "not a Stripe event")
    model = STRIPE_OBJECTS.get(envelope.type)
    obj = (
        _validate(
            model, data["data"]["object"], f"not a valid {envelope.type} event", "data.object"
        )
        if model
        else None
    )
    return StripeEvent(envelope=envelope, obj=obj)


# ---- Supabase -------------------------------------------------------------------------------


class SupabasePayload(Shape):
    type: Literal["INSERT", "UPDATE", "DELETE"] = Field(description="INSERT, UPDATE or DELETE")
    table: TableName = Field(description="a table name")
    record: dict[str, Any] | None = Field(None, description="an object")
    old_record: dict[str, Any] | None = Field(None, description="an object")


class KeyedRecord(Shape):
    id: RecordId = Field(description='a non-empty string (the row\'s "id")')


class Record(Shape):
    """A row as Supabase sends it (keys normalised to snake_case); `id` as in KeyedRecord."""

    id: RecordId | None = Field(None, description="a non-empty string")


class CustomerRecord(Record):
    organization_id: Text | None = Field(None, description="a string")
    email: Text | None = Field(None, description="a string")
    name: Text | None = Field(None, description="a string")


class InvoiceRecord(Record):
    status: Text | None = Field(None, description="a string")


class MembershipRecord(Record):
    user_id: Text | None = Field(None, description="a string")


class OrganizationRecord(Record):
    payouts_enabled: bool | None = Field(None, description="true or false")


SUPABASE_RECORDS: dict[str, type[Record]] = {
    "customers:INSERT": CustomerRecord,
    "invoices:UPDATE": InvoiceRecord,
    "events:INSERT": Record,
    "memberships:INSERT": MembershipRecord,
    "organizations:UPDATE": OrganizationRecord,
}


class SupabaseEvent(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    payload: SupabasePayload
    key_record: dict[str, Any]  # the row the event is about (old_record for DELETE), as sent
    record: Any = None  # the routed kind's Record model of `record`, normalised
    old: Any = None  # … and of `old_record`

    @property
    def kind(self) -> str:
        return f"{self.payload.table}:{self.payload.type}"


def supabase_event(data: Any) -> SupabaseEvent:
    if not isinstance(data, dict):
        raise BadShape(f"not a Supabase payload: expected a JSON object, got {_kind(data)}")
    payload = _validate(SupabasePayload, data, "not a Supabase payload")
    field = "old_record" if payload.type == "DELETE" else "record"
    keyed = data.get(field)
    if not isinstance(keyed, dict):
        raise BadShape(f'not a Supabase payload: "{field}" must be an object')
    _validate(KeyedRecord, keyed, f"not a Supabase payload: the {payload.table} record", field)
    model = SUPABASE_RECORDS.get(f"{payload.table}:{payload.type}")
    if model is None:
        return SupabaseEvent(payload=payload, key_record=keyed)
    what = f"not a valid {payload.table}:{payload.type} payload"
    record = _validate(model, normalise(payload.record), what, "record")
    old = _validate(model, normalise(payload.old_record), what, "old_record")
    return SupabaseEvent(payload=payload, key_record=keyed, record=record, old=old)


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def normalise(record: dict | None) -> dict:
    """Supabase sends snake_case; upstream code read camelCase. Map keys to snake_case."""
    return {_CAMEL.sub("_", str(k)).lower(): v for k, v in (record or {}).items()}


# ---- messages -------------------------------------------------------------------------------


def _validate(model: type[Shape], data: Any, what: str, prefix: str = ""):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadShape(f"{what}: {explain(model, data, exc, prefix)}") from None


def explain(
    model: type[BaseModel], data: Any, exc: ValidationError, prefix: str = "", limit: int = 3
) -> str:
    """One line per wrong field (at most `limit`): `"data.object.amount" must be … (got …)`."""
    seen: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        path = _path(data, error["loc"])
        name = ".".join(str(p) for p in ([prefix] if prefix else []) + path)
        if name in seen:
            continue
        if error["type"] == "missing":
            seen[name] = f'"{name}" is missing'
            continue
        info = _field(model, path)
        wanted = (
            f"must be {info.description}"
            if info is not None and info.description
            else _lower(error["msg"])
        )
        seen[name] = f'"{name}" {wanted} (got {_kind(error.get("input"))})'
    lines = list(seen.values())
    more = f"; and {len(lines) - limit} more" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more


def _path(data: Any, loc: tuple) -> list:
    """The error's location as keys of the input: pydantic puts union branch tags in `loc`."""
    path: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        if _holds(current, part):
            path.append(part)
            current = current[part]
        elif (
            i == len(loc) - 1
            and isinstance(part, str)
            and isinstance(current, dict)
            and part != "[key]"
        ):
            path.append(part)  # a missing field
    return path


def _holds(container: Any, key: Any) -> bool:
    """Whether `key` reaches an item of `container`: a dict's key, a list's index."""
    return (isinstance(container, dict) and isinstance(key, str) and key in container) or (
        isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container)
    )


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, UnionType, Annotated):
        return [m for arg in get_args(annotation) for m in _models_in(arg)]
    return []


def _field(model: type[BaseModel], path: list):
    info, models = None, [model]
    for part in path:
        found = next(
            (
                m.model_fields[part]
                for m in models
                if isinstance(part, str) and part in m.model_fields
            ),
            None,
        )
        if found is None:
            return None
        info, models = found, _models_in(found.annotation)
    return info


def _lower(message: str) -> str:
    return message[:1].lower() + message[1:]


def _kind(value: Any) -> str:
    """What a JSON value is, ASCII only and short (the reason is stored and printed)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = json.dumps(value, ensure_ascii=True, default=str)
    text = text if len(text) <= 40 else text[:37] + "..."
    kind = (
        "a string"
        if isinstance(value, str)
        else "an integer"
        if isinstance(value, int)
        else "a number"
    )
    return f"{kind} {text}"
