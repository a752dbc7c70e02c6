"""
Subscription tests drive the real pieces: the API, the sandbox provider's checkout (as a
buyer would submit it), its signed webhooks posted to `/webhooks/sandbox` (through
Django's test client instead of a socket), and the renewal job; the clock is moved with
time-machine.
"""

import json

from django.test import Client
from django.utils import timezone

from payments import signing
from payments.models import Payment, SandboxEvent, SandboxPayment
from payments.sandbox import gateway
from subscriptions import services
from subscriptions.tasks import subscriptions_run_due

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
CARD_DECLINES_OFF_SESSION = "4000000000000341"


def plan_create(merchant, code="premium", amount="599.00", **fields):
    return services.plan_create(
        merchant=merchant,
        code=code,
        name=fields.pop("name", code.title()),
        amount=amount,
        currency=fields.pop("currency", "RUB"),
        **fields,
    )


def subscribe(api, plan="premium", customer=None, expect=201, **body) -> dict:
    customer = customer or {"external_id": "viewer-1", "email": "viewer@example.com"}
    response = api.post(
        "/api/v1/subscriptions", {"plan": plan, "customer": customer, **body}, format="json"
    )
    assert response.status_code == expect, response.content
    return response.json()


def deliver_sandbox_webhooks() -> int:
    """Post every webhook the sandbox owes us to our endpoint, signed, as it would."""
    client = Client()
    sent = 0
    for event in SandboxEvent.objects.filter(delivered_at__isnull=True).order_by("created_at"):
        body = json.dumps(event.payload, separators=(",", ":"))
        headers = signing.webhook_headers(gateway.webhook_secret(), event.id, body)
        response = client.post(
            "/webhooks/sandbox",
            data=body,
            content_type="application/json",
            headers=headers,
        )
        assert response.status_code == 200, response.content
        SandboxEvent.objects.filter(pk=event.pk).update(delivered_at=timezone.now())
        sent += 1
    return sent


def pay(payment_id: str, card: str = CARD_OK) -> Payment:
    """The buyer pays the payment's sandbox checkout with `card`; its webhook arrives."""
    sandbox_payment = SandboxPayment.objects.get(reference=payment_id)
    gateway.checkout_submit(sandbox_payment.pk, card)
    deliver_sandbox_webhooks()
    return Payment.objects.get(pk=payment_id)


def pay_subscription(api, subscription: dict, card: str = CARD_OK) -> dict:
    payment_id = _open_payment_id(subscription)
    pay(payment_id, card)
    return api.get(f"/api/v1/subscriptions/{subscription['id']}").json()


def _open_payment_id(subscription: dict) -> str:
    assert subscription["checkout_url"], subscription
    return subscription["checkout_url"].rsplit("/", 1)[-1]


def run_due() -> dict:
    """One run of the renewal job (beat); the sandbox's webhooks then arrive."""
    result = subscriptions_run_due()
    deliver_sandbox_webhooks()
    return result
