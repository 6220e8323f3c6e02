"""Money: integers in the currency's minor unit plus an upper-case ISO 4217 code.

Zero-decimal currencies (Stripe's list) are whole units; Stripe's three-decimal currencies
(BHD, JOD, KWD, OMR, TND) count thousandths. Percentages are decimal strings in
percent units ("0.65" = 0.65 %); percentage amounts round half-up to an integer.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)

THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])  # Stripe's 3-decimal currencies

SYMBOLS = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "CAD": "CA$",
    "AUD": "A$",
    "CHF": "CHF ",
    "INR": "₹",
    "KRW": "₩",
    "PLN": "zł ",
    "CNY": "CN¥",
    "BRL": "R$",
    "SEK": "SEK ",
    "MXN": "MX$",
}


def is_zero_decimal(currency: str) -> bool:
    return currency.upper() in ZERO_DECIMAL


def normalise_currency(code: str) -> str:
    code = (code or "").strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"not an ISO 4217 currency code: {code!r}")
    return code


MAX_AMOUNT = 999_999_999_999  # Stripe takes at most 12 digits in any currency (8 in most)


def percent_of(amount: int, percent: str | Decimal | int) -> int:
    """`percent` % of `amount` (minor units), rounded half-up."""
    value = Decimal(amount) * Decimal(str(percent)) / Decimal(100)
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def decimals(currency: str) -> int:
    """Digits after the decimal point of the currency's minor unit: 0, 2, or 3 (fils, baisa,
    millimes). Upstream divided everything but the zero-decimal currencies by 100, which showed
    1.500 KWD as 15.00."""
    code = currency.upper()
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


def to_major(amount: int, currency: str) -> Decimal:
    """Minor units → the amount people read (cents → dollars; yen stay yen; fils → dinars)."""
    return Decimal(amount).scaleb(-decimals(currency))


def format_money(amount: int, currency: str) -> str:
    """`$12.34`, `¥1,200`, `-€5.00`, `1.500 KWD`; unknown codes as `12.34 XYZ`."""
    currency = currency.upper()
    major = abs(to_major(amount, currency))
    text = f"{major:,.{decimals(currency)}f}"
    sign = "-" if amount < 0 else ""
    symbol = SYMBOLS.get(currency)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"
