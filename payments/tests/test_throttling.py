"""Rate limits: 429 in the error shape with Retry-After, per key, and per address on webhooks."""

from datetime import UTC, datetime

import pytest
import time_machine

from conftest import client_for
from payments.models import Payment
from payments.tests.factories import APIKeyFactory
from payments.tests.test_authentication import assert_error
from payments.throttling import rate_parse, rate_take
from payments_project.tests.test_schema_and_settings import _manage

pytestmark = pytest.mark.django_db


def test_a_key_over_its_rate_gets_429_with_retry_after(api, merchant, settings):
    settings.API_RATE_LIMIT = "3/m"

    answers = [api.get("/api/v1/customers") for _ in range(4)]

    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    error = assert_error(answers[3], 429, "rate_limited", "rate_limit_error")
    assert "throttled" in error["message"].lower()
    assert 1 <= int(answers[3]["Retry-After"]) <= 60
    # Another key of the same merchant has its own budget.
    other_key = client_for(APIKeyFactory(merchant=merchant).raw_key)
    assert other_key.get("/api/v1/customers").status_code == 200


def test_a_throttled_money_request_changes_nothing(api, settings):
    settings.API_RATE_LIMIT = "1/m"
    body = {"amount": "10.00", "currency": "RUB"}

    assert api.post("/api/v1/payments", body, format="json").status_code == 201
    refused = api.post("/api/v1/payments", body, format="json")

    assert refused.status_code == 429
    assert Payment.objects.count() == 1


def test_webhook_views_are_limited_per_source_address(client, settings):
    settings.WEBHOOK_RATE_LIMIT = "2/m"

    def post(address):
        return client.post(
            "/webhooks/sandbox", data=b"{}", content_type="application/json", REMOTE_ADDR=address
        )

    assert [post("198.51.100.1").status_code for _ in range(2)] == [400, 400]  # unsigned
    limited = post("198.51.100.1")
    assert_error(limited, 429, "rate_limited", "rate_limit_error")
    assert int(limited["Retry-After"]) >= 1
    assert post("198.51.100.2").status_code == 400  # another address is not held back


@pytest.mark.parametrize("rate", ["100/s", "600/m", "10/h", "1000/d"])
def test_rates_parse(rate):
    assert rate_parse(rate)[0] >= 1


@pytest.mark.parametrize("rate", ["0/s", "fast", "10/x", "-1/m", "10"])
def test_bad_rates_are_refused(rate):
    with pytest.raises(ValueError):
        rate_parse(rate)


def test_a_bad_rate_setting_stops_the_process():
    result = _manage("check", API_RATE_LIMIT="lots")

    assert result.returncode != 0
    assert "API_RATE_LIMIT must look like 100/s" in result.stderr


@time_machine.travel(datetime(2026, 12, 2, 12, 0, 5, tzinfo=UTC), tick=False)
def test_counting_goes_on_when_redis_has_lost_its_scripts():
    # A Redis restart forgets loaded scripts; the count must not fail open or restart.
    from django.core.cache import caches

    assert rate_take("t", "lost-scripts", "2/m") == 0.0
    caches["default"]._cache.get_client(write=True).script_flush()

    assert rate_take("t", "lost-scripts", "2/m") == 0.0
    assert rate_take("t", "lost-scripts", "2/m") == 55.0
