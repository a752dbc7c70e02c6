"""The events and webhook endpoints lists: their filters, and odd input as a 400."""

from datetime import timedelta

import pytest
from django.utils import timezone

from payments.ids import ulid_at
from payments.tests.test_authentication import assert_error
from webhooks.models import Event, WebhookEndpoint

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/events"
ENDPOINTS = "/api/v1/webhook_endpoints"


def days_ago(days: int):
    return timezone.now() - timedelta(days=days)


def event(merchant, when, event_type="payment.succeeded") -> Event:
    return Event.objects.create(
        id=f"evt_{ulid_at(when)}", merchant=merchant, type=event_type, object_id="pay_x",
        data={"id": "pay_x"},
    )  # fmt: skip


def endpoint(merchant, when) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        id=f"we_{ulid_at(when)}", merchant=merchant, url="https://93.184.216.34/hooks",
        enabled_events=["*"], secret="whsec_test",
    )  # fmt: skip


def since_yesterday() -> str:
    """Between the old objects (three days ago) and the new ones (now)."""
    return days_ago(1).isoformat().replace("+00:00", "Z")


def test_an_event_type_with_a_nul_is_a_400(api):
    # It went straight into a query, and PostgreSQL refuses NUL in text: this was a 500.
    response = api.get(EVENTS, {"type": "payment.\x00"})

    assert assert_error(response, 400, "parameter_invalid", "invalid_request_error")["param"] == (
        "type"
    )


def test_events_list_by_created_time(api, merchant):
    # The parameters were documented but ignored: every event came back.
    old = event(merchant, days_ago(3))
    new = event(merchant, days_ago(0), "payment.failed")

    newer = api.get(EVENTS, {"created_gte": since_yesterday()}).json()
    older = api.get(EVENTS, {"created_lte": since_yesterday()}).json()
    failed = api.get(EVENTS, {"type": "payment.failed"}).json()

    assert [e["id"] for e in newer["results"]] == [new.pk]
    assert [e["id"] for e in older["results"]] == [old.pk]
    assert [e["id"] for e in failed["results"]] == [new.pk]


def test_endpoints_list_by_created_time(api, merchant):
    # The parameters were documented but ignored: every endpoint came back.
    old = endpoint(merchant, days_ago(3))
    new = endpoint(merchant, days_ago(0))

    newer = api.get(ENDPOINTS, {"created_gte": since_yesterday()}).json()
    older = api.get(ENDPOINTS, {"created_lte": since_yesterday()}).json()

    assert [e["id"] for e in newer["results"]] == [new.pk]
    assert [e["id"] for e in older["results"]] == [old.pk]
