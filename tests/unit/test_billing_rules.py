"""Pure billing rules: money, fees, period arithmetic (hypothesis properties + named cases)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowjobs.billing import fees
from flowjobs.billing.money import format_money, percent_of
from flowjobs.billing.periods import PeriodError, add_months, next_period, period_end

items = st.lists(st.tuples(st.integers(0, 10**7), st.integers(1, 1000)), max_size=8)
discounts = st.one_of(
    st.none(),
    st.builds(fees.Discount, st.just("percent"), st.integers(-10, 150)),
    st.builds(fees.Discount, st.just("fixed"), st.integers(-(10**6), 10**9)),
)
methods = st.sampled_from(["card", "link", "us_bank_account", "sepa_debit"])
countries = st.sampled_from(["US", "DE", "GB", None])


@given(
    items,
    discounts,
    st.integers(0, 10**6),
    methods,
    countries,
    countries,
    st.sampled_from(["platform", "merchant_of_record"]),
    st.integers(0, 10**8),
    st.integers(0, 10**8),
)
@settings(max_examples=300, deadline=None)
def test_fee_invariants(
    its, discount, tax, method, pm_country, org_country, contract, credits, volume
):
    inputs = fees.FeeInputs(
        items=its,
        currency="USD",
        payment_method_type=method,
        payment_method_country=pm_country,
        organization_country=org_country,
        contract_type=contract,
        upfront_processing_credits=credits,
        lifetime_settled_volume=volume,
        discount=discount,
    )
    if method in ("card", "sepa_debit") and (pm_country is None or org_country is None):
        with pytest.raises(
            fees.UnknownCountry
        ):  # the international fee cannot be told: refused, never 0 %
            fees.calculate(inputs, tax)
        return
    r = fees.calculate(inputs, tax)
    assert r.base_amount == sum(p * q for p, q in its)
    assert 0 <= r.discount_amount <= r.base_amount
    assert r.pretax_total == r.base_amount - r.discount_amount
    assert r.tax_amount == (tax if r.pretax_total > 0 else 0)
    assert r.total_due == r.pretax_total + r.tax_amount >= 0
    assert 0 <= r.application_fee <= r.total_due
    assert all(
        isinstance(v, int)
        for v in (r.base_amount, r.discount_amount, r.total_due, r.application_fee)
    )
    if credits <= volume:  # no credits left: the whole pretax amount carries the Flowglad fee
        assert r.flowglad_fee == percent_of(r.pretax_total, "0.65")
        assert r.flowglad_fee_percentage == ("0.65" if r.pretax_total > 0 else "0")
    # the stored percentage is the effective one: applied to the whole pretax, it gives the fee charged
    effective = Decimal(r.flowglad_fee_percentage) * r.pretax_total / 100
    subject = max(r.pretax_total - max(credits - volume, 0), 0)
    # the percentage is stored to 20 decimal places: off by at most 0.5e-20 points, that is
    # 0.5e-22 of the pretax amount (a tolerance that grows with the amount, as the error does)
    bound = Decimal(max(r.pretax_total, 1)) * Decimal("1e-22")
    assert abs(effective - Decimal(subject) * Decimal("0.65") / 100) <= bound
    assert Decimal(0) <= Decimal(r.flowglad_fee_percentage) <= Decimal("0.65")


def test_fee_named_cases():
    card_us = dict(currency="USD", payment_method_country="US", organization_country="US")
    r = fees.calculate(
        fees.FeeInputs(items=[(1000, 2)], discount=fees.Discount("percent", 10), **card_us)
    )
    assert (r.base_amount, r.discount_amount, r.pretax_total, r.total_due) == (
        2000,
        200,
        1800,
        1800,
    )
    assert r.flowglad_fee == 12  # 0.65 % of 1800 = 11.7 → 12 (half-up)
    assert r.payment_method_fee == 82  # 2.9 % of 1800 = 52.2 → 52, + 30
    assert r.international_fee == 0 and r.application_fee == 94
    intl = fees.calculate(
        fees.FeeInputs(
            items=[(10000, 1)],
            currency="EUR",
            payment_method_country="DE",
            organization_country="US",
        )
    )
    assert intl.international_fee == 150
    bank = fees.calculate(
        fees.FeeInputs(items=[(10**7, 1)], currency="USD", payment_method_type="us_bank_account")
    )
    assert bank.payment_method_fee == 500  # 0.8 % capped at $5
    mor = fees.calculate(
        fees.FeeInputs(
            items=[(1000, 1)],
            currency="USD",
            contract_type="merchant_of_record",
            payment_method_country="US",
            organization_country="DE",
        ),
        tax_amount=190,
    )
    assert (mor.mor_surcharge, mor.international_fee, mor.total_due) == (11, 0, 1190)
    us = dict(payment_method_country="US", organization_country="US")
    fixed = fees.calculate(
        fees.FeeInputs(items=[(500, 1)], currency="USD", discount=fees.Discount("fixed", 900), **us)
    )
    assert (fixed.discount_amount, fixed.total_due, fixed.application_fee) == (500, 0, 0)
    credited = fees.calculate(
        fees.FeeInputs(
            items=[(100000, 1)],
            currency="USD",
            upfront_processing_credits=60000,
            lifetime_settled_volume=20000,
            **us,
        )
    )
    assert credited.flowglad_fee == percent_of(60000, "0.65") and credited.notes
    # stored: the effective percentage after credits (0.65 % on 60 % of the amount), not the nominal one
    assert credited.flowglad_fee_percentage == "0.39"
    covered = fees.calculate(
        fees.FeeInputs(items=[(1000, 1)], currency="USD", upfront_processing_credits=5000, **us)
    )
    assert (covered.flowglad_fee, covered.flowglad_fee_percentage) == (0, "0")


def test_international_fee_country_is_the_billing_address_first_then_the_payment_method():
    assert fees.payment_method_country({"address": {"country": "de"}}, {"country": "US"}) == "DE"
    assert (
        fees.payment_method_country(
            {"address": {"address": {"country": "FR"}, "country": "DE"}}, {"country": "US"}
        )
        == "FR"
    )  # upstream's doubly nested address first
    assert fees.payment_method_country({"address": {"country": None}}, {"country": "US"}) == "US"
    assert fees.payment_method_country({}, {}) is None
    # a German billing address on a US-issued card, US organisation: international
    intl = fees.calculate(
        fees.FeeInputs(
            items=[(10000, 1)],
            currency="USD",
            organization_country="US",
            payment_method_country=fees.payment_method_country(
                {"address": {"country": "DE"}}, {"country": "US"}
            ),
        )
    )
    assert (intl.international_fee_percentage, intl.international_fee) == ("1.5", 150)


@pytest.mark.parametrize(
    "pm_country, org_country, method",
    [
        (None, "US", "card"),
        ("", "US", "sepa_debit"),
        ("Germany", "US", "card"),
        ("DE", None, "card"),
    ],
)
def test_an_unknown_country_is_refused_with_its_reason(pm_country, org_country, method):
    inputs = fees.FeeInputs(
        items=[(1000, 1)],
        currency="USD",
        payment_method_type=method,
        payment_method_country=pm_country,
        organization_country=org_country,
    )
    with pytest.raises(fees.UnknownCountry, match="no known country"):
        fees.calculate(inputs)
    # methods without an international fee do not need a country
    assert (
        fees.calculate(
            fees.FeeInputs(
                items=[(1000, 1)],
                currency="USD",
                payment_method_type="us_bank_account",
                organization_country=org_country,
            )
        ).international_fee
        == 0
    )


def test_money_formatting_per_currency():
    assert format_money(123456, "USD") == "$1,234.56"
    assert format_money(1200, "JPY") == "¥1,200"
    assert format_money(-500, "EUR") == "-€5.00"
    assert format_money(999, "XYZ") == "9.99 XYZ"
    assert format_money(1500, "KWD") == "1.500 KWD"  # fils: thousandths of a dinar
    assert format_money(-1234567, "bhd") == "-1,234.567 BHD"
    assert format_money(7, "JOD") == "0.007 JOD"
    assert percent_of(5, "10") == 1 and percent_of(15, "10") == 2  # half-up: 0.5 → 1, 1.5 → 2


starts = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(starts, st.sampled_from(["month", "year"]), st.integers(1, 24))
@settings(max_examples=400, deadline=None)
def test_period_arithmetic_properties(start, unit, count):
    end = period_end(start, unit, count)
    assert end > start and end.tzinfo is not None
    assert (end.hour, end.minute, end.second, end.microsecond) == (
        start.hour,
        start.minute,
        start.second,
        start.microsecond,
    )
    months = count * (12 if unit == "year" else 1)
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == months
    assert end.day == min(
        start.day, calendar.monthrange(end.year, end.month)[1]
    )  # clamped, never overflows
    nxt = next_period(end, unit, count)
    assert nxt[0] == end and nxt[1] > end  # contiguous: no gap, no overlap


def test_period_named_cases():
    jan31 = datetime(2027, 1, 31, 10, tzinfo=UTC)
    assert period_end(jan31, "month", 1) == datetime(2027, 2, 28, 10, tzinfo=UTC)
    assert period_end(datetime(2028, 1, 31, tzinfo=UTC), "month", 1).day == 29  # leap year
    assert next_period(period_end(jan31, "month", 1), "month", 1)[1] == datetime(
        2027, 3, 28, 10, tzinfo=UTC
    )
    assert period_end(datetime(2028, 2, 29, tzinfo=UTC), "year", 1) == datetime(
        2029, 2, 28, tzinfo=UTC
    )
    assert add_months(datetime(2027, 12, 15, tzinfo=UTC), 1).year == 2028
    for unit, count in (("day", 1), ("week", 1), ("month", 0)):
        with pytest.raises(PeriodError):
            period_end(jan31, unit, count)
    with pytest.raises(PeriodError):
        period_end(datetime(2027, 1, 1), "month", 1)  # naive: refused
    assert timedelta(0) < period_end(jan31, "year", 1) - jan31
