"""
Liveness and readiness probes for load balancers and orchestrators.

`/health/live` answers as long as the process serves requests. `/health/ready` also
proves each dependency answers: the database, the cache and the Celery broker, and says
which one failed (503) so that an operator reading the probe knows where to look.
"""

import logging
import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

from payments.errors import ErrorCode
from payments.exception_handlers import error_body

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 2


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_cache() -> None:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=10)
    try:
        if cache.get(key) != "1":
            raise RuntimeError("the value written could not be read back")
    finally:
        cache.delete(key)


def check_broker() -> str | None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "eager"  # tasks run in-process; there is no broker to reach
    # With the broker's own socket timeouts: a broker that hangs instead of refusing must
    # fail the probe, not hold one of our threads for as long as it hangs.
    with Connection(
        settings.CELERY_BROKER_URL,
        connect_timeout=BROKER_TIMEOUT_SECONDS,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    return None


CHECKS = {"database": check_database, "cache": check_cache, "broker": check_broker}


@never_cache
@require_GET
def live(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def ready(request):
    results, failed = {}, []
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            note = check()
        except Exception as exc:  # any failure of a dependency makes us not ready
            failed.append(name)
            # The probe is public: say which dependency, keep hosts and users in the log.
            logger.warning("Readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
            results[name] = {"status": "error", "error": type(exc).__name__}
        else:
            results[name] = {"status": note or "ok"}
        results[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    if failed:
        body = error_body(
            ErrorCode.SERVICE_UNAVAILABLE, f"Not ready: {', '.join(failed)} unavailable."
        )
        body["checks"] = results
        return JsonResponse(body, status=503)
    return JsonResponse({"status": "ok", "checks": results})
