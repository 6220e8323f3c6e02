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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from flowjobs.billing.enums import DiscountAmountType, PaymentMethodType, StripeConnectContractType
from flowjobs.billing.money import percent_of

MOR_SURCHARGE = "1.1"
INTERNATIONAL_FEE = "1.5"
CARD_FEE = ("2.9", 30, None)  # percent, fixed minor units, cap
PAYMENT_METHOD_FEES = {
    PaymentMethodType.CARD: CARD_FEE,
    PaymentMethodType.LINK: CARD_FEE,
    PaymentMethodType.US_BANK_ACCOUNT: ("0.8", 0, 500),
    PaymentMethodType.SEPA_DEBIT: ("0.8", 0, 600),
}


@dataclass(frozen=True)
class Discount:
    amount_type: str  # DiscountAmountType
    amount: int  # minor units (fixed) or whole percent (percent)


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


def base_amount(items: list[tuple[int, int]]) -> int:
    return sum(unit_price * quantity for unit_price, quantity in items)


def discount_amount(base: int, discount: Discount | None) -> int:
    if discount is None or base <= 0:
        return 0
    if discount.amount_type == DiscountAmountType.PERCENT:
        return min(percent_of(base, min(max(discount.amount, 0), 100)), base)
    return min(max(discount.amount, 0), base)


def is_merchant_of_record(contract_type: str) -> bool:
    return contract_type == StripeConnectContractType.MERCHANT_OF_RECORD


def international_fee_percentage(inputs: FeeInputs) -> str:
    method = inputs.payment_method_type
    if method not in (PaymentMethodType.CARD, PaymentMethodType.SEPA_DEBIT):
        return "0"
    pm_country, org_country = inputs.payment_method_country, inputs.organization_country
    if not pm_country or not org_country or pm_country.upper() == org_country.upper():
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


def calculate(inputs: FeeInputs, tax_amount: int = 0) -> FeeResult:
    """Totals and fees for one billing run; `tax_amount` comes from the tax calculator."""
    base = base_amount(inputs.items)
    discount = discount_amount(base, inputs.discount)
    pretax = max(base - discount, 0)
    tax = max(tax_amount, 0) if pretax > 0 else 0
    total = max(pretax + tax, 0)
    notes = []
    credits_left = max(inputs.upfront_processing_credits - inputs.lifetime_settled_volume, 0)
    fee_subject = max(pretax - credits_left, 0)
    if credits_left:
        notes.append(f"upfront processing credits left {credits_left}; "
                     f"Flowglad fee charged on {fee_subject} of {pretax}")
    mor = is_merchant_of_record(inputs.contract_type)
    mor_percentage = MOR_SURCHARGE if mor else "0"
    intl_percentage = international_fee_percentage(inputs)
    flowglad_fee = percent_of(fee_subject, Decimal(inputs.fee_percentage))
    mor_fee = percent_of(pretax, mor_percentage)
    intl_fee = percent_of(pretax, intl_percentage)
    method_fee = payment_method_fee(pretax, inputs.payment_method_type)
    application_fee = min(flowglad_fee + mor_fee + intl_fee + method_fee + tax, total)
    return FeeResult(inputs.currency, base, discount, pretax, tax, total, inputs.fee_percentage,
                     mor_percentage, intl_percentage, flowglad_fee, mor_fee, intl_fee,
                     method_fee, application_fee, notes)
