"""
Log output: one JSON object a line, with the request id, and secrets masked.

`mask()` is applied to the final text of every record (message, extra fields, traceback),
in JSON and in text format alike, so a careless `logger.info("%s", payload)` anywhere in
the code cannot write a card number, a key or a customer's email to the logs.
"""

import json
import logging
import re
from datetime import UTC, datetime

from payments.cards import card_numbers_masked
from payments_project.request_id import request_id_get

# --- Masking ------------------------------------------------------------------------------

# Token-shaped secrets first: their random tails may hold digit runs or `@`.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_AUTHORIZATION = re.compile(r"""(?i)(\bauthorization["']?\s*[:=]\s*["']?)[^"',;\r\n}]+""")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
# Ours (`sk_test_…`, `sk_live_…`, `pk_…`) and Stripe's restricted keys, plus `whsec_…`.
_API_KEY = re.compile(r"\b(sk_live_|sk_test_|rk_live_|rk_test_|pk_live_|pk_test_|pk_)[A-Za-z0-9]+")
_WEBHOOK_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+")
_EMAIL = re.compile(
    r"\b([A-Za-z0-9])[A-Za-z0-9._%+-]*?(?:@|%40)([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
)
# International numbers only (a leading `+`): bare digit groups are too often amounts,
# order numbers or dates to be called phones.
_PHONE = re.compile(r"(?<![A-Za-z0-9_+])\+\d(?:[ ().-]{0,2}\d){6,14}(?![0-9])")


def mask(text: str) -> str:
    """Hide card numbers, secrets, API keys, bearer tokens, emails and phone numbers."""
    if not text:
        return text
    text = _AUTHORIZATION.sub(r"\1[redacted]", text)
    text = _JWT.sub("eyJ…", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    text = _API_KEY.sub(r"\1…", text)
    text = _WEBHOOK_SECRET.sub("whsec_…", text)
    text = _EMAIL.sub(r"\1***@\2", text)
    text = card_numbers_masked(text)
    text = _PHONE.sub("[phone]", text)
    return text


def _masked_value(value):
    """A JSON-safe copy of an extra field with every string in it masked."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {mask(str(key)): _masked_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked_value(item) for item in value]
    return mask(str(value))


# --- Request id on records ----------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Put the current request id (or None) on every record as `record.request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            # Django logs a request's 4xx/5xx after the middleware has finished with it,
            # but passes the request along.
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", None) or request_id_get()
        return True


# --- Formatters ---------------------------------------------------------------------------

# What every LogRecord carries; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "request_id", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage()),
            "request_id": getattr(record, "request_id", None) or request_id_get(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and key not in entry:
                entry[key] = _masked_value(value)
        if record.exc_info:
            entry["exc"] = mask(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = mask(record.exc_text)
        if record.stack_info:
            entry["stack"] = mask(self.formatStack(record.stack_info))
        # ensure_ascii keeps each record on one line whatever the message holds.
        return json.dumps(entry, ensure_ascii=True, default=str)


class MaskingFormatter(logging.Formatter):
    """The readable format for development (`LOG_FORMAT=text`), masked all the same."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_get()
        return mask(super().format(record))
