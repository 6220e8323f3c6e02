"""Fee and total calculation for a billing run (spec §7.5) — a pure function of its inputs.

    base      = Σ unit_price × quantity of the period's items
    discount  = fixed amount, or percent (≤ 100) of base rounded half-up; never more than base
    pretax    = base − discount
    tax       = from the tax calculator (merchant-of-record organisations only; 0 otherwise)
    total due = pretax + tax           (what the customer is charged; fees are not added)

The application fee Flowglad keeps (sent to Stripe in live mode only) is the Flowglad fee
(after upfront processing credits) + the MoR surcharge + the international fee, each on
pretax and rounded half-up, plus the payment-method fee and the tax — capped at the total due,
because Stripe refuses an application fee larger than the charge.

The totals (base, discount, pretax, tax, total) come from flowjobs.billing.totals.compute, the
same function the invoice, receipt, emails and CLI read. The stored Flowglad fee percentage is
the effective one after upfront processing credits (fee % × post-credit amount ÷ pretax), as
upstream's `finalizeFeeCalculation` stores it.

The international fee's country is the payment method's billing-address country, else the
country Stripe reports for the payment method (card issuing country); spec §7.5 and upstream
read it in that order. A card or SEPA debit whose country (or the organisation's) is unknown
is refused with `UnknownCountry` — a billing run then ends `failed` with that reason, instead
of silently charging no international fee.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeGuard

from flowjobs.billing.enums import PaymentMethodType, StripeConnectContractType
from flowjobs.billing.money import percent_of
from flowjobs.billing.repo import BillingError
from flowjobs.billing.totals import Discount, base_amount, compute, discount_amount  # noqa: F401 (re-exported)

MOR_SURCHARGE = "1.1"
INTERNATIONAL_FEE = "1.5"
CARD_FEE: tuple[str, int, int | None] = ("2.9", 30, None)  # percent, fixed minor units, cap
# keyed by the method's str value: FeeInputs carries it as a str
PAYMENT_METHOD_FEES: dict[str, tuple[str, int, int | None]] = {
    PaymentMethodType.CARD: CARD_FEE,
    PaymentMethodType.LINK: CARD_FEE,
    PaymentMethodType.US_BANK_ACCOUNT: ("0.8", 0, 500),
    PaymentMethodType.SEPA_DEBIT: ("0.8", 0, 600),
}


class UnknownCountry(BillingError):
    """The country the international fee depends on is not known."""


@dataclass(frozen=True)
class FeeInputs:
    items: list[tuple[int, int]]  # (unit_price, quantity)
    currency: str
    payment_method_type: str = PaymentMethodType.CARD
    payment_method_country: str | None = None
    organization_country: str | None = None
    fee_percentage: str = "0.65"
    contract_type: str = StripeConnectContractType.PLATFORM
    upfront_processing_credits: int = 0
    lifetime_settled_volume: int = 0
    discount: Discount | None = None


@dataclass(frozen=True)
class FeeResult:
    currency: str
    base_amount: int
    discount_amount: int
    pretax_total: int
    tax_amount: int
    total_due: int
    flowglad_fee_percentage: str
    mor_surcharge_percentage: str
    international_fee_percentage: str
    flowglad_fee: int
    mor_surcharge: int
    international_fee: int
    payment_method_fee: int
    application_fee: int
    notes: list[str] = field(default_factory=list)


def payment_method_country(
    billing_details: dict | None, payment_method_data: dict | None
) -> str | None:
    """Billing-address country first (`address.address.country`, then `address.country`, as
    upstream reads the sometimes doubly nested address), then the payment method's own country."""
    address = (billing_details or {}).get("address") or {}
    inner = address.get("address") if isinstance(address, dict) else None
    nested = inner if isinstance(inner, dict) else {}
    for value in (
        nested.get("country"),
        address.get("country") if isinstance(address, dict) else None,
        (payment_method_data or {}).get("country"),
    ):
        if value and str(value).strip():
            return str(value).strip().upper()
    return None


def _known(country: str | None) -> TypeGuard[str]:
    return country is not None and len(country) == 2 and country.isascii() and country.isalpha()


def is_merchant_of_record(contract_type: str) -> bool:
    return contract_type == StripeConnectContractType.MERCHANT_OF_RECORD


def international_fee_percentage(inputs: FeeInputs) -> str:
    method = inputs.payment_method_type
    if method not in (PaymentMethodType.CARD, PaymentMethodType.SEPA_DEBIT):
        return "0"
    pm_country, org_country = inputs.payment_method_country, inputs.organization_country
    if not _known(pm_country):
        raise UnknownCountry(
            f"cannot tell the international fee: the {method} payment method has no known country "
            f"(billing address or card country: {pm_country!r})"
        )
    if not _known(org_country):
        raise UnknownCountry(
            f"cannot tell the international fee: the organization has no known country "
            f"({org_country!r})"
        )
    if pm_country.upper() == org_country.upper():
        return "0"
    if is_merchant_of_record(inputs.contract_type) and pm_country.upper() == "US":
        return "0"
    return INTERNATIONAL_FEE


def payment_method_fee(pretax: int, method: str) -> int:
    if pretax <= 0:
        return 0
    percent, fixed, cap = PAYMENT_METHOD_FEES.get(method, CARD_FEE)
    fee = percent_of(pretax, percent) + fixed
    return min(fee, cap) if cap is not None else fee


def effective_percentage(percent: str, fee_subject: int, pretax: int) -> str:
    """The Flowglad fee % on the whole pretax amount when only `fee_subject` of it carries
    `percent` (upstream: fee % × chargeable ÷ amount, 0 when the amount is 0)."""
    if pretax <= 0:
        return "0"
    if fee_subject >= pretax:
        return str(percent)
    value = (Decimal(str(percent)) * fee_subject / pretax).quantize(Decimal(1).scaleb(-20))
    return format(value.normalize(), "f") if value else "0"


def calculate(inputs: FeeInputs, tax_amount: int = 0) -> FeeResult:
    """Totals and fees for one billing run; `tax_amount` comes from the tax calculator."""
    totals = compute(inputs.currency, inputs.items, discount=inputs.discount, tax=tax_amount)
    base, discount, pretax, tax, total = (
        totals.base,
        totals.discount,
        totals.subtotal,
        totals.tax,
        totals.total,
    )
    notes = []
    credits_left = max(inputs.upfront_processing_credits - inputs.lifetime_settled_volume, 0)
    fee_subject = max(pretax - credits_left, 0)
    if credits_left:
        notes.append(
            f"upfront processing credits left {credits_left}; "
            f"Flowglad fee charged on {fee_subject} of {pretax}"
        )
    mor = is_merchant_of_record(inputs.contract_type)
    mor_percentage = MOR_SURCHARGE if mor else "0"
    intl_percentage = international_fee_percentage(inputs)
    flowglad_fee = percent_of(fee_subject, Decimal(inputs.fee_percentage))
    mor_fee = percent_of(pretax, mor_percentage)
    intl_fee = percent_of(pretax, intl_percentage)
    method_fee = payment_method_fee(pretax, inputs.payment_method_type)
    application_fee = min(flowglad_fee + mor_fee + intl_fee + method_fee + tax, total)
    return FeeResult(
        inputs.currency,
        base,
        discount,
        pretax,
        tax,
        total,
        effective_percentage(inputs.fee_percentage, fee_subject, pretax),
        mor_percentage,
        intl_percentage,
        flowglad_fee,
        mor_fee,
        intl_fee,
        method_fee,
        application_fee,
        notes,
    )
