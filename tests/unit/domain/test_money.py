"""Money parsing (CONTRACT section 1): decimal strings or JSON integers, never floats."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.domain.errors import ValidationError
from ledger.domain.money import (
    AMOUNT_MINOR_MAX,
    CURRENCY_DIGITS,
    format_minor,
    parse_amount,
    parse_currency,
)


@pytest.mark.parametrize(
    ("value", "minor"),
    [
        ("150000", 15_000_000),
        ("150000.00", 15_000_000),
        ("150000.0", 15_000_000),
        ("150000.5", 15_000_050),
        ("0.01", 1),
        ("1", 100),
        (150000, 15_000_000),
        (1, 100),
    ],
)
def test_decimal_strings_and_integers_become_minor_units(value: object, minor: int) -> None:
    assert parse_amount(value, "IDR") == minor


@pytest.mark.parametrize(
    "value",
    [
        150000.5,  # a JSON fraction
        1e5,  # a JSON exponent arrives as a float
        100000.0,  # a float even when whole
        "1e5",
        "1E5",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1.001",  # three fraction digits for IDR
        "01",
        "00",
        "1.",
        ".5",
        "",
        "1,000",
        "1_000",
        "0x10",
        "NaN",
        "Infinity",
        "١٢٣",  # non-ASCII digits
        True,
        False,
        None,
        [],
        {},
        -1,
    ],
)
def test_malformed_amounts_are_refused(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_amount(value, "IDR")
    assert info.value.field == "amount"
    assert info.value.code == "validation_error"


def test_a_json_integer_past_64_bits_read_as_a_float_is_called_too_large() -> None:
    import orjson

    value = orjson.loads(b"1180591620717411303424")  # 2**70, which orjson reads as a float
    with pytest.raises(ValidationError, match="too large"):
        parse_amount(value, "IDR")


def test_the_largest_amount_fits_64_bits_and_one_more_is_refused() -> None:
    whole, fraction = divmod(AMOUNT_MINOR_MAX, 100)
    assert AMOUNT_MINOR_MAX == 2**63 - 1
    assert parse_amount(f"{whole}.{fraction:02d}", "IDR") == AMOUNT_MINOR_MAX
    with pytest.raises(ValidationError):
        parse_amount(f"{whole}.{fraction + 1:02d}", "IDR")
    assert parse_amount(whole, "IDR") == whole * 100
    with pytest.raises(ValidationError):
        parse_amount(whole + 1, "IDR")
    with pytest.raises(ValidationError):
        parse_amount(2**63, "JPY")
    with pytest.raises(ValidationError):
        parse_amount("9" * 30, "IDR")
    with pytest.raises(ValidationError):
        parse_amount(10**40, "IDR")


@pytest.mark.parametrize("value", ["0", "0.00", "0.0", 0])
def test_zero_is_refused_unless_allowed(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_amount(value, "IDR")
    assert info.value.field == "amount"
    assert parse_amount(value, "IDR", allow_zero=True) == 0


def test_currency_digits_decide_the_fraction() -> None:
    assert parse_amount("100", "JPY") == 100
    with pytest.raises(ValidationError):
        parse_amount("100.5", "JPY")
    assert parse_amount("1.25", "USD") == 125
    assert parse_amount("1.250", "KWD") == 1250  # ISO 4217: 3 digits
    assert parse_amount("1.2345", "CLF") == 12345  # and 4
    with pytest.raises(ValidationError):
        parse_amount("1.2345", "KWD")
    assert (format_minor(1250, "KWD"), format_minor(12345, "CLF")) == ("1.250", "1.2345")


def test_errors_name_the_field_they_were_given() -> None:
    with pytest.raises(ValidationError) as info:
        parse_amount(1.5, "IDR", field="fee")
    assert info.value.field == "fee"
    assert info.value.as_dict()["field"] == "fee"


def test_currency_defaults_to_idr_and_refuses_unknown_codes() -> None:
    assert parse_currency(None) == "IDR"
    assert parse_currency("USD") == "USD"
    assert parse_currency("EUR") == "EUR"  # every active ISO 4217 code
    for bad in ("idr", "XXX", "ABC", "", 360, ["IDR"], True):
        with pytest.raises(ValidationError) as info:
            parse_currency(bad)
        assert info.value.field == "currency"


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (15_000_000, "IDR", "150000.00"),
        (1, "IDR", "0.01"),
        (0, "IDR", "0.00"),
        (-150, "IDR", "-1.50"),
        (-1, "IDR", "-0.01"),
        (100, "JPY", "100"),
        (-100, "JPY", "-100"),
        (-5, "IDR", "-0.05"),
        (7, "CLF", "0.0007"),
        (-123456, "KWD", "-123.456"),
        (5, "KWD", "0.005"),
        (-12345, "CLF", "-1.2345"),
        (AMOUNT_MINOR_MAX, "IDR", "92233720368547758.07"),
        (-AMOUNT_MINOR_MAX, "IDR", "-92233720368547758.07"),
    ],
)
def test_amounts_are_formatted_with_the_currency_digits(
    minor: int, currency: str, text: str
) -> None:
    assert format_minor(minor, currency) == text


def test_parse_and_format_round_trip() -> None:
    for text in ("0.01", "1.00", "150000.00", "92233720368547758.07"):
        assert format_minor(parse_amount(text, "IDR"), "IDR") == text


def test_formatting_agrees_with_decimal_for_every_digit_count() -> None:
    """Sliced text, as ``Decimal`` writes the same amount with the currency's digits."""
    powers = [7**k for k in range(23)] + [AMOUNT_MINOR_MAX]
    amounts = [*range(-1100, 1100), *powers, *(-p for p in powers)]
    for currency in ("JPY", "IDR", "KWD", "CLF"):
        digits = CURRENCY_DIGITS[currency]
        for minor in amounts:
            expected = f"{Decimal(minor).scaleb(-digits):.{digits}f}"
            assert format_minor(minor, currency) == expected, (minor, currency)
