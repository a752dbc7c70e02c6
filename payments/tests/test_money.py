"""Currency codes and decimal-string amounts: what is accepted, what is refused, and why."""

from decimal import Decimal

import pytest

from payments.errors import ValidationFailed
from payments.money import (
    CURRENCY_EXPONENTS,
    MAX_INTEGER_DIGITS,
    amount_format,
    amount_parse,
    currency_normalize,
    from_minor_units,
    to_minor_units,
)


def test_the_table_covers_the_iso_list():
    assert len(CURRENCY_EXPONENTS) >= 150
    assert all(len(code) == 3 and code.isupper() for code in CURRENCY_EXPONENTS)
    assert set(CURRENCY_EXPONENTS.values()) <= {0, 2, 3, 4}


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("JPY", 0),
        ("KRW", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("USD", 2),
        ("EUR", 2),
        ("RUB", 2),
        ("GBP", 2),
        ("CLF", 4),
        ("UYW", 4),
    ],
)
def test_exponents(currency, exponent):
    assert CURRENCY_EXPONENTS[currency] == exponent


@pytest.mark.parametrize("code", ["XAU", "XAG", "XPT", "XPD", "XTS", "XXX", "XDR", "XSU", "XBA"])
def test_non_currencies_are_not_in_the_table(code):
    assert code not in CURRENCY_EXPONENTS


@pytest.mark.parametrize(("value", "expected"), [("rub", "RUB"), ("Usd", "USD"), ("JPY", "JPY")])
def test_currency_is_normalized_to_uppercase(value, expected):
    assert currency_normalize(value) == expected


@pytest.mark.parametrize("value", ["XXX", "ZZZ", "xau", "RUBB", "RU", "", "R1B", "ÉUR", 123, None])
def test_bad_currency_is_refused_on_the_currency_param(value):
    with pytest.raises(ValidationFailed) as excinfo:
        currency_normalize(value)

    assert excinfo.value.param == "currency"


def test_unknown_currency_message_names_the_code():
    with pytest.raises(ValidationFailed) as excinfo:
        currency_normalize("abc")

    assert excinfo.value.message == "Unsupported currency: 'ABC'."


@pytest.mark.parametrize(
    ("value", "currency", "expected", "formatted"),
    [
        ("100", "JPY", Decimal("100"), "100"),
        ("1.500", "KWD", Decimal("1.500"), "1.500"),
        ("1.5", "KWD", Decimal("1.500"), "1.500"),
        ("599", "RUB", Decimal("599.00"), "599.00"),
        ("599.0", "RUB", Decimal("599.00"), "599.00"),
        ("599.00", "USD", Decimal("599.00"), "599.00"),
        (" 599.00\n", "USD", Decimal("599.00"), "599.00"),
        ("0.01", "EUR", Decimal("0.01"), "0.01"),
        ("007.50", "GBP", Decimal("7.50"), "7.50"),
        ("1.2345", "CLF", Decimal("1.2345"), "1.2345"),
    ],
)
def test_valid_amounts(value, currency, expected, formatted):
    amount = amount_parse(value, currency)

    assert amount == expected
    # Quantized to the currency: the exponent is part of the value we hand on.
    assert amount.as_tuple().exponent == -CURRENCY_EXPONENTS[currency]
    assert amount_format(amount, currency) == formatted


@pytest.mark.parametrize(
    ("value", "currency"),
    [
        ("1.5", "JPY"),
        ("100.0", "JPY"),
        ("1.50", "JPY"),
        ("599.001", "RUB"),
        ("1.5000", "KWD"),
        ("0", "USD"),
        ("0.00", "USD"),
        ("000", "JPY"),
        ("-5", "USD"),
        ("+5", "USD"),
        ("abc", "USD"),
        ("", "USD"),
        (" ", "USD"),
        ("1e3", "USD"),
        ("1E3", "USD"),
        ("NaN", "USD"),
        ("Infinity", "USD"),
        ("1,000.00", "USD"),
        ("1 000.00", "USD"),
        (".5", "USD"),
        ("5.", "USD"),
        ("0x10", "USD"),
        ("١٢٣", "USD"),  # Arabic-Indic digits: Decimal would take them, we do not.
        (1.5, "USD"),
        (5, "JPY"),
        (None, "USD"),
        (True, "USD"),
        (Decimal("5.00"), "USD"),
    ],
)
def test_invalid_amounts_are_refused_on_the_amount_param(value, currency):
    with pytest.raises(ValidationFailed) as excinfo:
        amount_parse(value, currency)

    assert excinfo.value.param == "amount"
    assert excinfo.value.message


def test_the_param_can_be_named():
    with pytest.raises(ValidationFailed) as excinfo:
        amount_parse("0", "USD", param="amount_to_capture")

    assert excinfo.value.param == "amount_to_capture"


@pytest.mark.parametrize(
    ("value", "currency", "message"),
    [
        ("0.00", "USD", "Amount must be greater than zero."),
        ("-5", "USD", 'Amount must be a positive decimal string such as "599.00".'),
        ("-5", "JPY", 'Amount must be a positive decimal string such as "599".'),
        (1.5, "USD", 'Send the amount as a decimal string such as "599.00", not a number.'),
        ("1.5", "JPY", "JPY amounts cannot have decimal places; send whole units."),
        ("599.001", "RUB", "RUB amounts can have at most 2 decimal places."),
    ],
)
def test_messages_tell_the_client_what_to_send(value, currency, message):
    with pytest.raises(ValidationFailed) as excinfo:
        amount_parse(value, currency)

    assert excinfo.value.message == message


def test_integer_part_is_capped():
    largest = "9" * MAX_INTEGER_DIGITS

    assert MAX_INTEGER_DIGITS == 12
    assert amount_parse(f"{largest}.99", "USD") == Decimal(f"{largest}.99")
    assert amount_parse("0" * 20 + "1", "USD") == Decimal("1.00")
    with pytest.raises(ValidationFailed, match="too large") as excinfo:
        amount_parse("1" + "0" * MAX_INTEGER_DIGITS, "USD")
    assert excinfo.value.param == "amount"


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (Decimal("599.00"), "USD", 59900),
        (Decimal("0.01"), "USD", 1),
        (Decimal("999999999999.99"), "USD", 99999999999999),
        (Decimal("100"), "JPY", 100),
        (Decimal("1.500"), "KWD", 1500),
        (Decimal("0.001"), "KWD", 1),
        (Decimal("1.2345"), "CLF", 12345),
    ],
)
def test_minor_units_round_trip(amount, currency, minor):
    assert to_minor_units(amount, currency) == minor
    assert from_minor_units(minor, currency) == amount
    assert amount_format(from_minor_units(minor, currency), currency) == amount_format(
        amount, currency
    )


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        # The database stores four places for every currency; zeros beyond the exponent are
        # not precision and convert cleanly.
        (Decimal("599.0000"), "RUB", 59900),
        (Decimal("100.0000"), "JPY", 100),
        (Decimal("1E+3"), "JPY", 1000),
    ],
)
def test_trailing_zeros_beyond_the_exponent_convert(amount, currency, minor):
    assert to_minor_units(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (Decimal("1.5"), "JPY"),
        (Decimal("0.001"), "USD"),
        (Decimal("599.0050"), "RUB"),
        (Decimal("1.0005"), "KWD"),
    ],
)
def test_excess_precision_raises_instead_of_rounding(amount, currency):
    with pytest.raises(ValueError):
        to_minor_units(amount, currency)
    with pytest.raises(ValueError):
        amount_format(amount, currency)


@pytest.mark.parametrize("amount", [Decimal("NaN"), Decimal("Infinity")])
def test_non_finite_amounts_raise(amount):
    with pytest.raises(ValueError):
        to_minor_units(amount, "USD")


@pytest.mark.parametrize("amount", [1.5, 5, "5.00"])
def test_to_minor_units_takes_only_decimals(amount):
    with pytest.raises(TypeError):
        to_minor_units(amount, "USD")


@pytest.mark.parametrize("value", [1.5, True, "100"])
def test_from_minor_units_takes_only_ints(value):
    with pytest.raises(TypeError):
        from_minor_units(value, "USD")


def test_from_minor_units_keeps_the_currency_exponent():
    assert str(from_minor_units(100, "JPY")) == "100"
    assert str(from_minor_units(1500, "KWD")) == "1.500"
    assert str(from_minor_units(5, "USD")) == "0.05"
    assert str(from_minor_units(0, "USD")) == "0.00"
