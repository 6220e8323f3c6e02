"""Money: integers in the currency's minor unit plus an upper-case ISO 4217 code.

Zero-decimal currencies (Stripe's list) are whole units. Percentages are decimal strings in
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


def percent_of(amount: int, percent: str | Decimal | int) -> int:
    """`percent` % of `amount` (minor units), rounded half-up."""
    value = Decimal(amount) * Decimal(str(percent)) / Decimal(100)
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_major(amount: int, currency: str) -> Decimal:
    """Minor units → the amount people read (cents → dollars; yen stay yen)."""
    if is_zero_decimal(currency):
        return Decimal(amount)
    return Decimal(amount) / Decimal(100)


def format_money(amount: int, currency: str) -> str:
    """`$12.34`, `¥1,200`, `-€5.00`; unknown codes as `12.34 XYZ`."""
    currency = currency.upper()
    major = abs(to_major(amount, currency))
    text = f"{major:,.0f}" if is_zero_decimal(currency) else f"{major:,.2f}"
    sign = "-" if amount < 0 else ""
    symbol = SYMBOLS.get(currency)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"
