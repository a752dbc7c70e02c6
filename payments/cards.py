"""
Card numbers: how to recognise one, so that none is ever accepted by the API, stored or
logged. Only the sandbox's own checkout page takes a test card, and it keeps the last four.

A "card number" here is 13 to 19 digits, optionally grouped by single spaces or dashes (or a
URL's `+` and `%20`), not glued to letters, that passes the Luhn check. Our ids and ULIDs
are letters and digits glued together, so their digits never stand alone; amounts and
dates have dots and too few digits.
"""

import json
import re

CANDIDATE = re.compile(r"(?<![A-Za-z0-9_])\d(?:(?:[ +-]|%20)?\d){12,18}(?![A-Za-z0-9_])")


def card_normalize(number: str) -> str:
    """The digits of a number as a buyer typed it, without spaces and dashes."""
    return "".join(ch for ch in (number or "") if not ch.isspace() and ch != "-")


def luhn_valid(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(number)):
        value = int(digit)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_within(text: str) -> tuple[int, int] | None:
    """
    The span (of `text`'s groups) of a Luhn-valid card number, the whole run first, then
    whole groups, longest first ("4242 4242 4242 4242 12" holds a card and a month).
    """
    if luhn_valid(re.sub(r"\D", "", text)):
        return 0, len(text)
    parts = re.split(r"([ -])", text)
    groups = parts[::2]
    for size in range(len(groups), 0, -1):
        for start in range(len(groups) - size + 1):
            window = "".join(groups[start : start + size])
            if 13 <= len(window) <= 19 and luhn_valid(window):
                begin = len("".join(parts[: start * 2]))
                end = len("".join(parts[: (start + size) * 2 - 1]))
                return begin, end
    return None


def _run(match: re.Match) -> str:
    """A candidate digit run with a URL's `+` and `%20` read as the spaces they are."""
    return match.group(0).replace("%20", " ").replace("+", " ")


def contains_card_number(text: str) -> bool:
    return any(_card_within(_run(match)) for match in CANDIDATE.finditer(text))


def card_numbers_masked(text: str) -> str:
    """`text` with every card number in it replaced by `•••• 4242` (its last four)."""

    def masked(match: re.Match) -> str:
        run = _run(match)
        span = _card_within(run)
        if span is None:
            return match.group(0)
        begin, end = span
        return f"{run[:begin]}•••• {re.sub(r'[^0-9]', '', run[begin:end])[-4:]}{run[end:]}"

    return CANDIDATE.sub(masked, text)


# --- The API refuses them -----------------------------------------------------------------


def _field_with_card_number(value, path: str = "") -> str | None:
    """The dotted path of the first field (or key) of parsed JSON holding a card number."""
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if contains_card_number(str(key)):
                return here
            found = _field_with_card_number(item, here)
            if found:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _field_with_card_number(item, f"{path}[{index}]")
            if found:
                return found
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return path if contains_card_number(str(value)) else None
    return None


CARD_NUMBER_MESSAGE = (
    "This looks like a card number. Card details are never accepted by this API: send the "
    "buyer to the payment's checkout_url, where the provider collects them."
)


def card_number_param(request) -> str | None:
    """
    The parameter of an API request (query or JSON body) that holds a card number; "" when
    one is there but the body is not JSON enough to name the field; None when there is none.
    """
    for key, values in request.GET.lists():
        for value in [key, *values]:
            if contains_card_number(value):
                return key
    body = request.body.decode("utf-8", errors="replace")
    if not contains_card_number(body):
        return None
    try:
        return _field_with_card_number(json.loads(body)) or ""
    except ValueError:
        return ""
