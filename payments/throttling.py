"""
Rate limits: per API key (or customer session) on the API, per source address on the
unauthenticated webhook views. Fixed windows counted with the cache's atomic increment,
so every web process (Redis in production) counts against the same budget; a refusal is
429 `rate_limited` with `Retry-After`.

A limit fails open: while the cache is unreachable requests are let through (and a warning
logged), because a rate limiter that answers 5xx would take the whole API down with Redis.
"""

import logging
import math
import time
import weakref

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from redis import Redis
from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle

from payments.network import client_ip

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# While the cache is down every request would say so; once a minute per process is enough.
_WARN_EVERY_SECONDS = 60.0
_last_warned = float("-inf")


def rate_parse(rate: str) -> tuple[int, int]:
    """`"100/s"`, `"600/m"` → (requests, seconds). Raises ValueError for anything else."""
    count, _, period = rate.partition("/")
    if not count.isdigit() or int(count) < 1 or period[:1] not in _PERIODS:
        raise ValueError(f"A rate is '<requests>/<s|m|h|d>', not '{rate}'.")
    return int(count), _PERIODS[period[:1]]


def rate_take(scope: str, ident: str, rate: str) -> float:
    """
    Count one request of `ident` against `rate`. Returns 0 when allowed, else the seconds
    until its window ends (what `Retry-After` says). Allowed when the cache cannot count.
    """
    limit, period = rate_parse(rate)
    now = time.time()
    window = int(now // period)
    key = f"throttle:{scope}:{ident}:{window}"
    try:
        count = _count(key, period)
    except RedisError as exc:
        _warn_cache_down(scope, exc)
        return 0.0
    if count <= limit:
        return 0.0
    return (window + 1) * period - now


def _count(key: str, period: int) -> int:
    count_script = _count_script()
    if count_script is not None:
        # One round trip (a script: a pipeline object costs more than the trip it saves;
        # redis-py loads the script again if Redis lost it in a restart).
        return count_script(keys=[cache.make_and_validate_key(key)], args=[period + 1])
    # Another cache (the embedded default's local memory): its own atomic increment.
    cache.add(key, 0, timeout=period + 1)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr: this request opens the window
        cache.set(key, 1, timeout=period + 1)
        return 1


_redis_scripts: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
# Count in the window, opening it (with its expiry) on its first request.
_COUNT_LUA = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def _count_script():
    """
    The counting script on a Redis client of the cache's own connection pool, made once
    per cache backend, or None when the cache is not Redis. (Django's cache API makes a new
    client, with its table of ~170 response callbacks, for every call, and has no scripts.)
    """
    default = caches["default"]  # this thread's backend (`cache` only proxies to it)
    if not isinstance(default, RedisCache):
        return None
    backend = default._cache
    script = _redis_scripts.get(backend)
    if script is None:
        client = Redis(connection_pool=backend._get_connection_pool(write=True))
        script = _redis_scripts[backend] = client.register_script(_COUNT_LUA)
    return script


def _warn_cache_down(scope: str, exc: Exception) -> None:
    global _last_warned
    now = time.monotonic()
    if now - _last_warned >= _WARN_EVERY_SECONDS:
        _last_warned = now
        logger.warning(
            "Rate limits (%s) not enforced: the cache is unavailable (%s: %s)",
            scope,
            type(exc).__name__,
            exc,
        )


class ApiRateThrottle(BaseThrottle):
    """`API_RATE_LIMIT` per credential: each key, and each customer session, has its own."""

    scope = "api"

    def allow_request(self, request, view):
        principal = request.user
        ident = (
            principal.pk
            if getattr(principal, "is_authenticated", False)
            else f"ip:{client_ip(request)}"
        )
        self._wait = rate_take(self.scope, ident, settings.API_RATE_LIMIT)
        return self._wait == 0

    def wait(self):
        return math.ceil(self._wait) or None
