import pytest
from django.test import override_settings

from payments_project import health

pytestmark = pytest.mark.django_db

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_live(client):
    response = client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_checks_database_and_the_real_redis_cache(client, settings):
    assert "RedisCache" in settings.CACHES["default"]["BACKEND"]

    response = client.get("/health/ready")

    assert response.status_code == 200, response.content
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["cache"]["status"] == "ok"


def test_ready_is_503_naming_the_cache_when_redis_is_down(client, settings):
    broken = {**settings.CACHES["default"], "LOCATION": UNREACHABLE_REDIS}
    with override_settings(CACHES={"default": broken}):  # Django rebuilds the cache handlers
        response = client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "service_unavailable"
    assert "cache" in body["error"]["message"]
    assert body["checks"]["cache"]["status"] == "error"
    # A public probe names the dependency, never its host or credentials.
    assert "127.0.0.1" not in response.content.decode()
    assert body["checks"]["database"]["status"] == "ok"


def test_broker_check_reaches_a_real_redis_broker(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = settings.REDIS_URL

    assert health.check_broker() is None


def test_ready_is_503_naming_the_broker_when_it_is_down(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = UNREACHABLE_REDIS

    response = client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["status"] == "error"
    assert "broker" in response.json()["error"]["message"]
