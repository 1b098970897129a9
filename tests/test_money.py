"""lifecycle.money: readable dollars, never scientific notation, nothing non-finite printed as money."""
import math
import re

import pytest
from hypothesis import given, strategies as st

from lifecycle import money

AMOUNTS = st.floats(min_value=-1e18, max_value=1e18, allow_nan=False, allow_infinity=False)
SCIENTIFIC = re.compile(r"\d[eE][+-]?\d|[eE][+-]\d")


@pytest.mark.parametrize("x, text", [
    (0.01, "$0.01"), (0.5, "$0.50"), (1, "$1.00"), (999.5, "$999.50"), (10_000, "$10,000"), (2968, "$2,968"),
    (3.65e6, "$3.65 million"), (60e6, "$60 million"), (1.2e9, "$1.2 billion"), (3.65e13, "$36.5 trillion"),
    (999_999.7, "$1 million"), (4.447e-5, "$0.0000445"), (0, "$0"), (-1234.4, "-$1,234"),
])
def test_usd_reads_as_people_write_money(x, text):
    assert money.usd(x) == text


def test_short_form_and_the_issue_cases():
    assert money.usd(3.65e13, short=True) == "$36.5T"
    assert money.usd(7e16, short=True) == "$70,000T"  # was "$7e+04B" on lesson 09's axis
    assert money.usd(250_000, short=True) == "$250k"
    assert money.per_query(4.447e-5) == "$44.47 per million queries"
    assert money.per_query(0.01) == "$0.01 per query"
    assert money.cents(4.4e-5) == "0.0044 ¢"
    assert money.cents(1e-7) == "0.00001 ¢"


@given(AMOUNTS, st.booleans(), st.integers(min_value=1, max_value=6))
def test_never_scientific_and_round_trips(x, short, sig):
    text = money.usd(x, sig, short=short)
    assert not SCIENTIFIC.search(text), text
    assert "nan" not in text and "inf" not in text
    back = money.parse_usd(text)
    if abs(x) >= 1000 and not (short or abs(x) >= 1e6):  # whole dollars
        assert abs(back - x) <= 0.5 + 1e-9 * abs(x)
    elif abs(x) >= 1e-300:  # sig significant digits, half a unit in the last place (and cents for $1-$1,000)
        assert math.isclose(back, x, rel_tol=0.5 * 10 ** (1 - sig) + 1e-12, abs_tol=0.005), (x, text, back)


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_per_query_and_cents_never_scientific(x):
    for text in (money.per_query(x), money.cents(x), money.fixed(x, 3)):
        assert not SCIENTIFIC.search(text), text


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_money_is_an_error(bad):
    for f in (money.usd, money.per_query, money.cents):
        with pytest.raises(ValueError, match="finite"):
            f(bad)


@pytest.mark.parametrize("bad", ["10", None, True])
def test_non_numbers_are_a_type_error(bad):
    with pytest.raises(TypeError, match="real number"):
        money.usd(bad)


@given(st.text().filter(lambda t: "`" not in t))
def test_markdown_leaves_no_dollar_sign_and_is_idempotent(text):
    safe = money.markdown(text)
    assert "$" not in safe
    assert money.markdown(safe) == safe
    assert safe.replace(money.DOLLAR_MARKDOWN, "$") == text or money.DOLLAR_MARKDOWN in text


def test_markdown_leaves_code_alone():
    assert money.markdown("`$HOME` costs $1") == "`$HOME` costs " + money.DOLLAR_MARKDOWN + "1"


def test_mathtext_escapes_each_dollar_once():
    assert money.mathtext("$1 and $2") == r"\$1 and \$2"
    assert money.mathtext(r"\$1") == r"\$1"


def test_parse_rejects_other_text():
    with pytest.raises(ValueError, match="not an amount"):
        money.parse_usd("1e+04 dollars")
