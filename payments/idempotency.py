"""
`Idempotency-Key` for every POST that creates or moves money (IETF draft "The
Idempotency-Key HTTP Header Field"; Stripe's practice).

- The first request with a key runs inside one database transaction together with the
  stored response: a crash can never leave the effect without its key or the reverse.
- A retry with the same key and body gets the stored status and body, byte for byte, with
  `Idempotent-Replayed: true`.
- The same key with another body (or path) is 422 `idempotency_key_reused`.
- A retry while the first is still running is 409 `idempotency_key_in_use`; on PostgreSQL
  a transaction-scoped advisory lock tells "running" apart without waiting for it.
- Only successful (2xx) outcomes are stored. An error rolls back everything, the key
  included, so the client may fix the request and retry with the same key.
"""

import functools
import hashlib
import json
from contextlib import contextmanager

from django.core.cache import cache
from django.db import connection, transaction
from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from payments.errors import ErrorCode, PaymentError, ValidationFailed
from payments.models import IdempotencyKey
from payments_project import metrics

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


def idempotent(view_method):
    """Decorate a DRF view's `post`: the request runs at most once per key."""

    @functools.wraps(view_method)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view_method(view, request, *args, **kwargs)
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise ValidationFailed(
                f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters.",
                param=HEADER,
            )
        merchant = request.user.merchant
        livemode = request.user.livemode
        fingerprint = request_fingerprint(request)
        with _exclusive(f"{merchant.pk}:{livemode}", key):
            stored = IdempotencyKey.objects.filter(
                merchant=merchant, livemode=livemode, key=key
            ).first()
            if stored is not None:
                if stored.request_fingerprint != fingerprint:
                    raise PaymentError(
                        "This Idempotency-Key was used with a different request.",
                        code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
                        param=HEADER,
                    )
                return _replay(stored)
            response = view_method(view, request, *args, **kwargs)
            if not 200 <= response.status_code < 300:
                # Only success is remembered; whatever a failed answer did is undone.
                transaction.set_rollback(True)
                return response
            body = _render(response)
            IdempotencyKey.objects.create(
                merchant=merchant,
                livemode=livemode,
                key=key,
                request_method=request.method,
                request_path=request.path[:500],
                request_fingerprint=fingerprint,
                response_status=response.status_code,
                response_body=body,
                response_content_type="application/json",
            )
        return HttpResponse(body, status=response.status_code, content_type="application/json")

    return wrapper


def request_fingerprint(request) -> str:
    """Method, path and the body's meaning (key order and spacing do not count)."""
    canonical = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    head = f"{request.method} {request.path}"
    customer = getattr(request.user, "customer", None)
    if customer is not None:
        # Keys are per merchant, and a replay runs before the view checks access: without
        # this, one customer repeating another's key, path and body would be handed the
        # other's stored response. With it, that is a 422 like any other key reuse.
        head = f"{head} customer:{customer.pk}"
    return hashlib.sha256(f"{head}\n{canonical}".encode()).hexdigest()


def _render(response) -> bytes:
    if isinstance(response, Response):
        return JSONRenderer().render(response.data)
    return bytes(response.content)


def _replay(stored: IdempotencyKey) -> HttpResponse:
    response = HttpResponse(
        bytes(stored.response_body),
        status=stored.response_status,
        content_type=stored.response_content_type,
    )
    response[REPLAYED_HEADER] = "true"
    metrics.idempotent_replay_count()
    return response


@contextmanager
def _exclusive(scope: str, key: str):
    """One transaction per key at a time; a second caller is refused at once, not queued."""
    lock_id = _lock_id(scope, key)
    if connection.vendor == "postgresql":
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_id])
                if not cursor.fetchone()[0]:
                    raise _in_use()
            yield
        return
    # The embedded default (SQLite, one server process): a cache entry held for as long
    # as the transaction runs, released however it ends.
    cache_key = f"idempotency-lock:{lock_id}"
    if not cache.add(cache_key, 1, timeout=300):
        raise _in_use()
    try:
        with transaction.atomic():
            yield
    finally:
        cache.delete(cache_key)


def _in_use() -> PaymentError:
    return PaymentError(
        "A request with this Idempotency-Key is still being processed. Retry later.",
        code=ErrorCode.IDEMPOTENCY_KEY_IN_USE,
    )


def _lock_id(scope: str, key: str) -> int:
    digest = hashlib.sha256(f"{scope}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
