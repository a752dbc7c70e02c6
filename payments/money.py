"""
Money at the API edge: ISO 4217 currency codes, and amounts as decimal strings in major units.

Amounts are `Decimal` from the request body to the database; providers that count in minor
units (Stripe) get exact integers from `to_minor_units`. Nothing here ever touches a float.
"""

import re
from decimal import Decimal

from payments.errors import ValidationFailed

# Active ISO 4217 codes (list one) and their minor-unit exponents. Left out: precious metals,
# SDR, bond-market and testing units (XAU, XAG, XPT, XPD, XDR, XSU, XUA, XBA-XBD, XTS, XXX)
# and the funds codes nobody is charged in (BOV, CHE, CHW, COU, MXV, USN, UYI). CLF and UYW
# are kept on purpose: they are the only exponent-4 codes, priced in for real in Chile and
# Uruguay. Withdrawn codes (ANG, BGN, CUC, HRK, SLL, ZWL) are gone: a new payment in them
# could never settle.
CURRENCY_EXPONENTS: dict[str, int] = {
    "AED": 2,
    "AFN": 2,
    "ALL": 2,
    "AMD": 2,
    "AOA": 2,
    "ARS": 2,
    "AUD": 2,
    "AWG": 2,
    "AZN": 2,
    "BAM": 2,
    "BBD": 2,
    "BDT": 2,
    "BHD": 3,
    "BIF": 0,
    "BMD": 2,
    "BND": 2,
    "BOB": 2,
    "BRL": 2,
    "BSD": 2,
    "BTN": 2,
    "BWP": 2,
    "BYN": 2,
    "BZD": 2,
    "CAD": 2,
    "CDF": 2,
    "CHF": 2,
    "CLF": 4,
    "CLP": 0,
    "CNY": 2,
    "COP": 2,
    "CRC": 2,
    "CUP": 2,
    "CVE": 2,
    "CZK": 2,
    "DJF": 0,
    "DKK": 2,
    "DOP": 2,
    "DZD": 2,
    "EGP": 2,
    "ERN": 2,
    "ETB": 2,
    "EUR": 2,
    "FJD": 2,
    "FKP": 2,
    "GBP": 2,
    "GEL": 2,
    "GHS": 2,
    "GIP": 2,
    "GMD": 2,
    "GNF": 0,
    "GTQ": 2,
    "GYD": 2,
    "HKD": 2,
    "HNL": 2,
    "HTG": 2,
    "HUF": 2,
    "IDR": 2,
    "ILS": 2,
    "INR": 2,
    "IQD": 3,
    "IRR": 2,
    "ISK": 0,
    "JMD": 2,
    "JOD": 3,
    "JPY": 0,
    "KES": 2,
    "KGS": 2,
    "KHR": 2,
    "KMF": 0,
    "KPW": 2,
    "KRW": 0,
    "KWD": 3,
    "KYD": 2,
    "KZT": 2,
    "LAK": 2,
    "LBP": 2,
    "LKR": 2,
    "LRD": 2,
    "LSL": 2,
    "LYD": 3,
    "MAD": 2,
    "MDL": 2,
    "MGA": 2,
    "MKD": 2,
    "MMK": 2,
    "MNT": 2,
    "MOP": 2,
    "MRU": 2,
    "MUR": 2,
    "MVR": 2,
    "MWK": 2,
    "MXN": 2,
    "MYR": 2,
    "MZN": 2,
    "NAD": 2,
    "NGN": 2,
    "NIO": 2,
    "NOK": 2,
    "NPR": 2,
    "NZD": 2,
    "OMR": 3,
    "PAB": 2,
    "PEN": 2,
    "PGK": 2,
    "PHP": 2,
    "PKR": 2,
    "PLN": 2,
    "PYG": 0,
    "QAR": 2,
    "RON": 2,
    "RSD": 2,
    "RUB": 2,
    "RWF": 0,
    "SAR": 2,
    "SBD": 2,
    "SCR": 2,
    "SDG": 2,
    "SEK": 2,
    "SGD": 2,
    "SHP": 2,
    "SLE": 2,
    "SOS": 2,
    "SRD": 2,
    "SSP": 2,
    "STN": 2,
    "SVC": 2,
    "SYP": 2,
    "SZL": 2,
    "THB": 2,
    "TJS": 2,
    "TMT": 2,
    "TND": 3,
    "TOP": 2,
    "TRY": 2,
    "TTD": 2,
    "TWD": 2,
    "TZS": 2,
    "UAH": 2,
    "UGX": 0,
    "USD": 2,
    "UYU": 2,
    "UYW": 4,
    "UZS": 2,
    "VED": 2,
    "VES": 2,
    "VND": 0,
    "VUV": 0,
    "WST": 2,
    "XAF": 0,
    "XCD": 2,
    "XCG": 2,
    "XOF": 0,
    "XPF": 0,
    "YER": 2,
    "ZAR": 2,
    "ZMW": 2,
    "ZWG": 2,
}

MAX_INTEGER_DIGITS = 12

# [0-9], not \d: \d also matches Arabic-Indic and other Unicode digits, which Decimal would
# happily accept. Used with fullmatch, so a trailing newline cannot slip past a `$`.
_AMOUNT_PATTERN = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def currency_normalize(value: object) -> str:
    """Return the uppercase ISO 4217 code for `value`, which may come in any case."""
    if not isinstance(value, str):
        raise ValidationFailed(
            'Currency must be a three-letter ISO 4217 code such as "USD".', param="currency"
        )
    code = value.strip().upper()
    # isascii as well as isalpha: "É" and friends are letters too.
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise ValidationFailed(
            'Currency must be a three-letter ISO 4217 code such as "USD".', param="currency"
        )
    if code not in CURRENCY_EXPONENTS:
        raise ValidationFailed(f"Unsupported currency: '{code}'.", param="currency")
    return code


def amount_parse(value: object, currency: str, *, param: str = "amount") -> Decimal:
    """
    Parse a major-unit decimal string ("599.00", "100" for JPY) for `currency`.

    Returns the amount at exactly the currency's exponent; anything that is not a positive
    amount the currency can represent is a `ValidationFailed` naming `param`.
    """
    exponent = CURRENCY_EXPONENTS[currency]
    # The example in messages fits the currency: telling a JPY client to send "599.00" would
    # only lead to the next rejection.
    example = _example(exponent)
    if not isinstance(value, str):
        # A JSON number has already been through a binary float in most clients, so "0.1"
        # may have become 0.1000000000000000055511151231257827; refusing it beats guessing.
        if isinstance(value, int | float) and not isinstance(value, bool):
            message = f'Send the amount as a decimal string such as "{example}", not a number.'
        else:
            message = f'Amount must be a decimal string such as "{example}".'
        raise ValidationFailed(message, param=param)

    text = value.strip()
    if not _AMOUNT_PATTERN.fullmatch(text):
        raise ValidationFailed(
            f'Amount must be a positive decimal string such as "{example}".', param=param
        )

    whole, _, fraction = text.partition(".")
    # Leading zeros carry no value, so "000000000000001" is not "too large".
    if len(whole.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise ValidationFailed(
            f"Amount is too large: at most {MAX_INTEGER_DIGITS} digits are allowed before "
            "the decimal point.",
            param=param,
        )
    # Trailing zeros count: "100.0" JPY claims a precision the currency does not have, and
    # silently accepting it would hide a client that formats every currency with cents.
    if len(fraction) > exponent:
        if exponent == 0:
            message = f"{currency} amounts cannot have decimal places; send whole units."
        else:
            message = f"{currency} amounts can have at most {exponent} decimal places."
        raise ValidationFailed(message, param=param)

    # Padding the string instead of calling quantize keeps the result independent of the
    # thread's decimal context (its precision and traps).
    amount = Decimal(f"{whole}.{fraction.ljust(exponent, '0')}" if exponent else whole)
    if amount == 0:
        raise ValidationFailed("Amount must be greater than zero.", param=param)
    return amount


def amount_format(amount: Decimal, currency: str) -> str:
    """The canonical string for `amount`: exactly the currency's decimals ("599.00", "100")."""
    # Through minor units so that an amount with more precision than the currency raises
    # instead of being rounded; the database keeps four places for every currency.
    return f"{from_minor_units(to_minor_units(amount, currency), currency):f}"


def to_minor_units(amount: Decimal, currency: str) -> int:
    """`amount` in the currency's minor units; ValueError if that would need rounding."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"amount must be a Decimal, not {type(amount).__name__}")
    if not amount.is_finite():
        raise ValueError(f"amount must be finite, got {amount}")
    exponent = CURRENCY_EXPONENTS[currency]
    # Integer arithmetic on the Decimal's own digits: exact whatever the decimal context.
    sign, digits, amount_exponent = amount.as_tuple()
    coefficient = int("".join(map(str, digits)))
    shift = amount_exponent + exponent
    if shift >= 0:
        minor = coefficient * 10**shift
    else:
        minor, remainder = divmod(coefficient, 10**-shift)
        if remainder:
            raise ValueError(
                f"{amount} has more precision than {currency} allows ({exponent} decimal places)"
            )
    return -minor if sign else minor


def from_minor_units(value: int, currency: str) -> Decimal:
    """The major-unit `Decimal` for `value` minor units, at exactly the currency's exponent."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"value must be an int, not {type(value).__name__}")
    exponent = CURRENCY_EXPONENTS[currency]
    digits = tuple(int(digit) for digit in str(abs(value)))
    return Decimal((1 if value < 0 else 0, digits, -exponent))


def _example(exponent: int) -> str:
    return "599" + ("." + "0" * exponent if exponent else "")


def amount_coerce(amount, currency: str, *, param: str = "amount") -> Decimal:
    """
    An amount from anywhere, held to the same rules: a Decimal from our own code (admin,
    demo, renewals) is checked like a client's string; anything else must be that string.
    """
    if isinstance(amount, Decimal):
        if not amount.is_finite():
            raise ValidationFailed("Amount must be a finite number.", param=param)
        amount = f"{amount.normalize():f}"
    return amount_parse(amount, currency, param=param)
