"""
The request id: one token that follows a piece of work from the API call into its tasks.

The middleware takes `X-Request-ID` from the caller when it is a sane token (a proxy or a
client app may have made one already) or makes a new one, keeps it in a context variable
for the request, answers with it, and logs one line per request. Tasks enqueued during
the request carry it in their message headers (`payments_project/celery.py`), so a
payment's lines in the web process and in the workers share one id.
"""

import logging
import re
import time
import uuid
from contextvars import ContextVar, Token
from urllib.parse import unquote_plus

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

logger = logging.getLogger("payments_project.requests")


def request_id_get() -> str | None:
    return _request_id.get()


def request_id_set(value: str | None) -> Token:
    """Make `value` the current request id; pass the token to `request_id_reset`."""
    return _request_id.set(value)


def request_id_reset(token: Token) -> None:
    _request_id.reset(token)


def request_id_new() -> str:
    return uuid.uuid4().hex


def request_id_from_header(value: str | None) -> str:
    """The caller's id if it is a sane token, else a new one (ours end up in log fields)."""
    if value and _SANE.fullmatch(value):
        return value
    return request_id_new()


def _path_masked(request) -> str:
    from payments_project.logging import mask  # it imports this module

    # Decoded first, so `buyer%40example.com` is seen as the email it is.
    query = request.META.get("QUERY_STRING", "")
    path = f"{request.path}?{unquote_plus(query)}" if query else request.path
    return mask(path)


def _merchant_id(request) -> str | None:
    # DRF puts its principal on the Django request too. Anything else (the admin's lazy
    # session user) is not evaluated here: a log line must not cost a query.
    from payments.authentication import ApiPrincipal

    user = getattr(request, "user", None)
    if type(user) is ApiPrincipal:  # type(), not isinstance(): no lazy object is evaluated
        return user.merchant.pk
    return None


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from_header(request.headers.get(HEADER))
        request.request_id = request_id
        token = request_id_set(request_id)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response[HEADER] = request_id
            duration_ms = round((time.monotonic() - started) * 1000, 1)
            path = _path_masked(request)
            # Method, path, status and timing only: bodies and headers may hold anything.
            logger.info(
                "%s %s %s %sms",
                request.method,
                path,
                response.status_code,
                duration_ms,
                extra={
                    "method": request.method,
                    "path": path,
                    "status": response.status_code,
                    "duration_ms": duration_ms,
                    "merchant_id": _merchant_id(request),
                },
            )
            return response
        finally:
            request_id_reset(token)
