"""The proration arithmetic of spec §7.7 (flowjobs.billing.proration) against a hand formula
written with exact fractions, over random instants and prices."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowjobs.billing.proration import prorate

START = datetime(2027, 1, 31, 10, tzinfo=UTC)
END = datetime(2027, 2, 28, 10, tzinfo=UTC)
PERIOD_MS = int((END - START).total_seconds() * 1000)


def js_round(x: Fraction) -> int:  # Math.round: halves go up
    return math.floor(x + Fraction(1, 2))


def hand(offset_ms: int, old: int, new: int, paid: int) -> int:
    f = Fraction(offset_ms, PERIOD_MS)
    # the spec's parts, their sum never above the higher plan (see billing/proration.py)
    return max(min(js_round(old * f) + js_round(new * (1 - f)), max(old, new)) - paid, 0)


money = st.integers(min_value=0, max_value=10_000_000)


@settings(max_examples=400, deadline=None)
@given(offset=st.integers(min_value=0, max_value=PERIOD_MS - 1), old=money, new=money, paid=money)
def test_net_charge_is_the_hand_formula_and_never_negative(offset, old, new, paid):
    p = prorate(START, END, START + timedelta(milliseconds=offset), old, new, paid, "USD")
    assert p.net == hand(offset, old, new, paid)
    assert p.net >= 0
    assert p.old_part + p.new_part - p.paid <= p.net
    assert (p.elapsed_ms, p.period_ms) == (offset, PERIOD_MS)


@settings(max_examples=200, deadline=None)
@given(offset=st.integers(min_value=0, max_value=PERIOD_MS - 1), old=money, new=money)
def test_a_downgrade_after_paying_the_old_plan_never_charges(offset, old, new):
    p = prorate(
        START,
        END,
        START + timedelta(milliseconds=offset),
        max(old, new),
        min(old, new),
        max(old, new),
        "USD",
    )
    assert p.net == 0


def test_a_change_to_the_same_price_where_both_parts_end_in_a_half_charges_nothing():
    # Found by the property above: 3,600,000 split at this millisecond is 2,157,029.5 +
    # 1,442,970.5; the spec's two roundings made 3,600,001, one cent above what was paid.
    at = START + timedelta(milliseconds=1_449_523_824)
    p = prorate(START, END, at, 3_600_000, 3_600_000, 3_600_000, "USD")
    assert (p.old_part, p.new_part, p.net) == (2_157_030, 1_442_970, 0)


def test_worked_example_mid_period_upgrade():
    # 14 of 28 days through: half the old 12.00 plan + half the new 49.00 plan − 12.00 paid
    p = prorate(START, END, START + timedelta(days=14), 1200, 4900, 1200, "USD")
    assert (p.old_part, p.new_part, p.net) == (600, 2450, 1850)
    assert p.as_dict()["display"]["net"] == "$18.50"
    assert any("$18.50" in line for line in p.lines())


def test_half_a_minor_unit_rounds_up_like_math_round_and_the_parts_add_up_to_the_total():
    # half of 1 + half of 1: both parts round up (Math.round), but their sum stays at the plan
    # (the spec's two roundings made 2 of a 1-unit plan)
    p = prorate(
        START, START + timedelta(milliseconds=2), START + timedelta(milliseconds=1), 1, 1, 0, "USD"
    )
    assert (p.old_part, p.new_part, p.net) == (1, 0, 1)
    p = prorate(
        START, START + timedelta(milliseconds=2), START + timedelta(milliseconds=1), 1, 2, 0, "USD"
    )
    assert (p.old_part, p.new_part, p.net) == (1, 1, 2)  # 0.5 + 1 = 1.5 rounds up


def test_zero_decimal_currency_is_shown_in_whole_units():
    p = prorate(START, END, START + timedelta(days=7), 1000, 2000, 1000, "JPY")
    assert p.net == 250 + 1500 - 1000
    assert "750" in p.as_dict()["display"]["net"] and "." not in p.as_dict()["display"]["net"]


def test_an_empty_period_is_refused():
    with pytest.raises(ValueError):
        prorate(START, START, START, 1, 1, 0, "USD")
