import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from payments.tests.factories import MerchantFactory
from webhooks.models import Delivery, Event, InboundWebhook, WebhookEndpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivery():
    merchant = MerchantFactory()
    event = Event.objects.create(
        merchant=merchant, type="payment.succeeded", object_id="pay_1", data={}
    )
    endpoint = WebhookEndpoint.objects.create(
        merchant=merchant, url="https://93.184.216.34/hook", enabled_events=["*"], secret="whsec_x"
    )
    return Delivery.objects.create(
        event=event, endpoint=endpoint, status=Delivery.Status.FAILED, attempts=11
    )


def test_webhook_screens_render(admin_client, delivery):
    InboundWebhook.objects.create(provider="sandbox", status="failed", error="boom")
    for url in [
        "/admin/webhooks/inboundwebhook/",
        "/admin/webhooks/event/",
        f"/admin/webhooks/event/{delivery.event_id}/change/",
        "/admin/webhooks/delivery/",
        f"/admin/webhooks/delivery/{delivery.pk}/change/",
        "/admin/webhooks/webhookendpoint/",
        f"/admin/webhooks/webhookendpoint/{delivery.endpoint_id}/change/",
    ]:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert "whsec_x" not in response.content.decode()


def test_staff_redeliver_a_failed_callback(
    admin_client, delivery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as sent:
        admin_client.post(
            "/admin/webhooks/delivery/",
            {"action": "redeliver", "_selected_action": [delivery.pk]},
        )

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.next_attempt_at <= timezone.now()
    assert len(sent) == 1  # the attempt is enqueued once the change commits
    assert LogEntry.objects.filter(object_id=delivery.pk).exists()


def test_staff_reprocess_failed_webhooks(admin_client):
    payload = {
        "id": "sbx_evt_1",
        "type": "refund.succeeded",
        "data": {
            "object": {
                "id": "sbx_re_1",
                "payment": "sbx_pay_1",
                "status": "succeeded",
                "amount": "1.00",
                "currency": "RUB",
                "reference": "",
            }
        },
    }
    webhook = InboundWebhook.objects.create(
        provider="sandbox", event_id="sbx_evt_1", status="failed", payload=payload, error="boom"
    )
    forged = InboundWebhook.objects.create(provider="sandbox", status="rejected")

    response = admin_client.post(
        "/admin/webhooks/inboundwebhook/",
        {"action": "reprocess", "_selected_action": [webhook.pk, forged.pk]},
        follow=True,
    )

    webhook.refresh_from_db()
    assert webhook.status == "ignored"  # not one of our refunds, and no longer failed
    assert webhook.error == ""
    assert "Reprocessed: 1 ignored." in response.content.decode()
    assert LogEntry.objects.filter(object_id=webhook.pk).exists()
    assert not LogEntry.objects.filter(object_id=forged.pk).exists()


def test_rotating_an_endpoints_secret_shows_the_new_one_once(admin_client, delivery):
    endpoint = delivery.endpoint

    response = admin_client.post(
        "/admin/webhooks/webhookendpoint/",
        {"action": "rotate_secret", "_selected_action": [endpoint.pk]},
    )

    endpoint.refresh_from_db()
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert endpoint.secret != "whsec_x" and endpoint.secret in response.content.decode()
    assert endpoint.previous_secret == "whsec_x"  # still signing during the grace period
    assert LogEntry.objects.filter(object_id=endpoint.pk).exists()
    page = admin_client.get(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/")
    assert endpoint.secret not in page.content.decode()
