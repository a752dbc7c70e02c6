"""
The sandbox end to end, over real HTTP: the API creates a payment, the buyer follows the
pay link to the sandbox's page and submits a card, the sandbox sends a signed webhook to
`/webhooks/sandbox` from a Celery task (eager here), and the payment reaches its outcome.
"""

import re

import pytest
import requests
from playwright.sync_api import expect

from conftest import client_for
from payments.models import Payment, SandboxPayment
from payments.tests.factories import APIKeyFactory
from webhooks.models import InboundWebhook

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live(live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    return live_server


@pytest.fixture
def api(live, merchant):
    return client_for(APIKeyFactory(merchant=merchant).raw_key)


class Buyer:
    """A buyer without a browser: follows links and posts the sandbox's form."""

    def __init__(self):
        self.session = requests.Session()

    def open(self, url):
        return self.session.get(url, timeout=10)

    def pay(self, checkout_url, card_number):
        page = self.open(checkout_url)
        assert "/sandbox/checkout/" in page.url
        return self.submit(page, card_number=card_number)

    def confirm(self, page, decision):
        return self.submit(page, decision=decision)

    def submit(self, page, **fields):
        """Post the page's form back to it, as a browser would (with its CSRF token)."""
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        return self.session.post(
            page.url,
            data={"csrfmiddlewaretoken": token, **fields},
            headers={"Referer": page.url},
            timeout=10,
        )


def create_payment(api, **body):
    response = api.post(
        "/api/v1/payments", {"amount": "599.00", "currency": "RUB", **body}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def timeline(api, payment_id):
    events = api.get(f"/api/v1/payments/{payment_id}/events").json()["results"]
    return [(e["type"], e["source"]) for e in events]


def test_test_card_4242_pays(api):
    payment = create_payment(api)

    landing = Buyer().pay(payment["checkout_url"], "4242 4242 4242 4242")

    assert "Payment succeeded" in landing.text
    body = api.get(f"/api/v1/payments/{payment['id']}").json()
    assert body["status"] == "succeeded"
    assert body["amount_captured"] == "599.00"
    assert body["payment_method"] == {"type": "card", "brand": "visa", "last4": "4242"}
    assert timeline(api, payment["id"]) == [
        ("created", "api"),
        ("checkout_created", "task"),
        ("succeeded", "provider"),
    ]
    assert InboundWebhook.objects.get().status == "processed"


def test_card_0002_is_declined_with_a_code(api):
    payment = create_payment(api)

    landing = Buyer().pay(payment["checkout_url"], "4000 0000 0000 0002")

    assert "Payment failed" in landing.text
    body = api.get(f"/api/v1/payments/{payment['id']}").json()
    assert (body["status"], body["failure_code"]) == ("failed", "card_declined")
    assert body["failure_message"] == "Your card was declined."


@pytest.mark.parametrize("decision, status", [("approve", "succeeded"), ("decline", "failed")])
def test_card_3155_asks_for_confirmation(api, decision, status):
    payment = create_payment(api)
    buyer = Buyer()

    confirm_page = buyer.pay(payment["checkout_url"], "4000 0025 0000 3155")
    assert "/confirm" in confirm_page.url
    assert Payment.objects.get(pk=payment["id"]).status == "pending"
    buyer.confirm(confirm_page, decision)

    assert api.get(f"/api/v1/payments/{payment['id']}").json()["status"] == status


def test_authorize_then_capture(api):
    payment = create_payment(api, capture=False)

    landing = Buyer().pay(payment["checkout_url"], "4242424242424242")
    assert "Payment authorized" in landing.text
    assert api.get(f"/api/v1/payments/{payment['id']}").json()["status"] == "requires_capture"

    captured = api.post(
        f"/api/v1/payments/{payment['id']}/capture", {"amount": "500.00"}, format="json"
    ).json()

    assert (captured["status"], captured["amount_captured"]) == ("succeeded", "500.00")
    remote = SandboxPayment.objects.get(reference=payment["id"])
    assert (remote.status, str(remote.amount_captured)) == ("succeeded", "500.0000")


def test_authorized_payment_can_be_voided(api):
    payment = create_payment(api, capture=False)
    Buyer().pay(payment["checkout_url"], "4242424242424242")

    voided = api.post(f"/api/v1/payments/{payment['id']}/cancel", {}, format="json").json()

    assert voided["status"] == "canceled"
    assert SandboxPayment.objects.get(reference=payment["id"]).status == "canceled"


@pytest.mark.parametrize(
    "number, message",
    [("1234 5678 9012 3456", "invalid"), ("4111 1111 1111 1111", "not a sandbox test card")],
)
def test_an_unusable_card_number_changes_nothing(api, number, message):
    payment = create_payment(api)

    page = Buyer().pay(payment["checkout_url"], number)

    assert page.status_code == 400
    assert message in page.text
    assert Payment.objects.get(pk=payment["id"]).status == "pending"
    assert SandboxPayment.objects.get(reference=payment["id"]).status == "open"


def test_only_the_last_four_digits_are_kept(api):
    payment = create_payment(api)

    Buyer().pay(payment["checkout_url"], "4242 4242 4242 4242")

    for model in (Payment, SandboxPayment, InboundWebhook):
        for row in model.objects.values():
            assert "4242424242424242" not in str(row)


def test_pay_link_pages(api, live):
    buyer = Buyer()
    assert buyer.open(f"{live.url}/pay/pay_nope").status_code == 404
    payment = create_payment(api)
    Payment.objects.filter(pk=payment["id"]).update(provider_checkout_url="")

    waiting = buyer.open(payment["checkout_url"])

    assert waiting.status_code == 200
    assert 'http-equiv="refresh"' in waiting.text
    assert "Preparing your payment" in waiting.text


@pytest.mark.browser
def test_a_real_browser_pays_with_4242(api, browser_page):
    payment = create_payment(api, description="Premium plan")

    browser_page.goto(payment["checkout_url"])
    expect(browser_page.locator("h1")).to_contain_text("599.00 RUB")
    browser_page.fill("#card_number", "4242 4242 4242 4242")
    browser_page.click("#pay-button")

    expect(browser_page.locator("#pay-heading")).to_have_text("Payment succeeded")
    assert api.get(f"/api/v1/payments/{payment['id']}").json()["status"] == "succeeded"


def test_concurrent_captures_capture_once(api, merchant):
    from conftest import run_concurrently

    payment = create_payment(api, capture=False)
    Buyer().pay(payment["checkout_url"], "4242424242424242")
    raw_key = APIKeyFactory(merchant=merchant).raw_key
    url = f"/api/v1/payments/{payment['id']}/capture"

    responses = run_concurrently(
        6, lambda: client_for(raw_key).post(url, {"amount": "30.00"}, format="json")
    )

    assert sorted(r.status_code for r in responses) == [200] + [409] * 5
    ours = Payment.objects.get(pk=payment["id"])
    theirs = SandboxPayment.objects.get(reference=payment["id"])
    assert (ours.status, str(ours.amount_captured)) == ("succeeded", "30.0000")
    assert (theirs.status, str(theirs.amount_captured)) == ("succeeded", "30.0000")
    assert timeline(api, payment["id"]).count(("succeeded", "api")) == 1
