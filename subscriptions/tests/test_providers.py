"""
Subscriptions through the real provider adapters: the `stripe` and `yookassa` SDKs talk to
the local fakes (`payments/tests/fakes/`). Subscribing opens a checkout that asks the
provider to keep the card; the buyer pays on the fake; the provider's webhook (Stripe:
signed; YooKassa: from an allowlisted address, re-fetched) activates the subscription. The
renewal job then charges the kept card off-session, once per period, with the payment's
idempotency key; a declined charge makes the subscription past due, and a charge the
provider answers `pending` renews when its webhook arrives.
"""

import copy
import json

import pytest

from billing.models import Invoice
from payments.models import Payment
from payments.tests import test_provider_stripe as stripe_tests
from payments.tests import test_provider_yookassa as yookassa_tests
from subscriptions.models import Subscription
from subscriptions.tasks import subscriptions_run_due
from subscriptions.tests.flows import subscribe
from webhooks.models import Event, InboundWebhook

pytestmark = pytest.mark.django_db(transaction=True)

# The providers' own test modules' fixtures, reused: the fakes started, and our settings
# (credentials, API base) pointing the SDKs at them.
fake_stripe = stripe_tests.fake_stripe
_quick_sdk_backoff = stripe_tests._quick_sdk_backoff  # autouse: the SDK's retries are quick
fake = yookassa_tests.fake
yookassa = yookassa_tests.yookassa

RENEWAL_DUE = "2026-02-28 09:30:00+00:00"  # inside the hour before the first period ends
FIRST_RETRY = "2026-03-01 09:31:00+00:00"  # a day after the first failed renewal


@pytest.fixture
def fake_yookassa(fake, yookassa):
    """The fake YooKassa, with our settings pointing the SDK at it."""
    return fake


def _events(subscription_id: str) -> list[str]:
    events = Event.objects.filter(object_id=subscription_id).order_by("id")
    return list(events.values_list("type", flat=True))


def _invoices(api, subscription_id: str) -> list[dict]:
    body = api.get(f"/api/v1/invoices?subscription={subscription_id}").json()
    return list(reversed(body["results"]))  # oldest first


def _state(api, subscription_id: str) -> dict:
    return api.get(f"/api/v1/subscriptions/{subscription_id}").json()


def _first_payment(subscription: dict) -> Payment:
    return Invoice.objects.get(pk=subscription["latest_invoice"]).payment


def _inbox(provider: str) -> list[tuple[str, str]]:
    """The provider's webhooks we received: (event type, how processing went), in order."""
    webhooks = InboundWebhook.objects.filter(provider=provider).order_by("id")
    return list(webhooks.values_list("event_type", "status"))


def _renewals() -> list[Payment]:
    return list(Payment.objects.filter(off_session=True).order_by("id"))


# --- Stripe ---------------------------------------------------------------------------------


def stripe_sends(client, fake_stripe, event_type: str, object_id: str) -> dict:
    """Stripe posts an event about the object, as it is now, signed with our secret."""
    body, headers = stripe_tests.signed(fake_stripe.event(event_type, object_id))
    response = client.post(
        "/webhooks/stripe", data=body, content_type="application/json", headers=headers
    )
    assert response.status_code == 200, response.content
    return response.json()


def stripe_card_declines(fake_stripe, method_id: str, decline_code: str | None) -> None:
    """
    From now on the bank declines charges of the saved card with `decline_code` (funds ran
    out, the card is blocked), or, with None, takes them again.
    """
    decline = ("card_declined", decline_code) if decline_code else None
    fake_stripe.payment_methods[method_id]["_decline"] = decline


def active_on_stripe(api, client, fake_stripe) -> dict:
    """Subscribed with Stripe, paid on Checkout, activated by Stripe's webhook."""
    subscription = subscribe(api, "premium", provider="stripe")
    payment = _first_payment(subscription)
    fake_stripe.complete_session(payment.provider_checkout_id)
    stripe_sends(client, fake_stripe, "checkout.session.completed", payment.provider_checkout_id)
    state = _state(api, subscription["id"])
    assert state["status"] == "active", state
    return state


def test_stripe_subscribe_pay_on_checkout_and_the_webhook_activates_it_with_the_card_kept(
    api, client, premium, clock, fake_stripe
):
    subscription = subscribe(
        api, "premium", provider="stripe", return_url="https://shop.example/account"
    )

    assert (subscription["status"], subscription["provider"]) == ("incomplete", "stripe")
    payment = _first_payment(subscription)
    (sent,) = fake_stripe.requests_to("POST", "/v1/checkout/sessions")
    assert sent.header("Idempotency-Key") == f"checkout-{payment.pk}"
    # Stripe is asked to keep the card, on a customer, for charges with nobody present.
    assert sent.form["payment_intent_data"]["setup_future_usage"] == "off_session"
    assert sent.form["customer_creation"] == "always"
    assert sent.form["customer_email"] == "viewer@example.com"
    assert sent.form["line_items"][0]["price_data"] == {
        "currency": "rub",
        "unit_amount": "59900",
        "product_data": {"name": "Subscription to Premium"},
    }
    session = fake_stripe.sessions[payment.provider_checkout_id]
    pay_link = client.get(subscription["checkout_url"].removeprefix("http://testserver"))
    assert (pay_link.status_code, pay_link["Location"]) == (302, session["url"])

    fake_stripe.complete_session(session["id"])  # the buyer pays on Stripe Checkout
    answer = stripe_sends(client, fake_stripe, "checkout.session.completed", session["id"])

    assert answer == {"received": True, "duplicate": False}
    state = _state(api, subscription["id"])
    assert state["status"] == "active"
    assert (state["current_period_start"], state["current_period_end"]) == (
        "2026-01-31T10:00:00.000000Z",
        "2026-02-28T10:00:00.000000Z",
    )
    assert state["payment_method"] == {"type": "card", "brand": "visa", "last4": "4242"}
    assert state["checkout_url"] is None
    [invoice] = _invoices(api, subscription["id"])
    assert (invoice["status"], invoice["amount_paid"], invoice["payment"]) == (
        "paid",
        "599.00",
        payment.pk,
    )
    assert _events(subscription["id"]) == ["subscription.activated"]
    # What renewals will charge: the card Checkout attached to the customer it made.
    kept = Subscription.objects.get(pk=subscription["id"])
    intent = fake_stripe.intents[fake_stripe.sessions[session["id"]]["payment_intent"]]
    assert kept.payment_method_id == intent["payment_method"]
    assert kept.provider_customer_id == fake_stripe.sessions[session["id"]]["customer"]
    assert kept.provider_customer_id.startswith("cus_")
    assert fake_stripe.payment_methods[kept.payment_method_id]["customer"] == (
        kept.provider_customer_id
    )
    assert _inbox("stripe") == [("checkout.session.completed", "processed")]


def test_stripe_renewal_charges_the_kept_card_off_session_once(
    api, client, premium, clock, fake_stripe
):
    subscription = active_on_stripe(api, client, fake_stripe)
    kept = Subscription.objects.get(pk=subscription["id"])

    clock.move_to(RENEWAL_DUE)
    subscriptions_run_due()
    subscriptions_run_due()  # a second beat, or the same one again: nothing more is charged

    [renewal] = _renewals()
    (charge,) = fake_stripe.requests_to("POST", "/v1/payment_intents")
    assert charge.header("Idempotency-Key") == f"charge-{renewal.pk}"
    assert (charge.form["off_session"], charge.form["confirm"]) == ("true", "true")
    assert charge.form["payment_method"] == kept.payment_method_id
    assert charge.form["customer"] == kept.provider_customer_id
    assert (charge.form["amount"], charge.form["currency"]) == ("59900", "rub")
    assert charge.form["metadata"]["payment_id"] == renewal.pk
    assert (renewal.status, renewal.amount_captured) == ("succeeded", premium.amount)
    assert renewal.provider_payment_id in fake_stripe.intents
    state = _state(api, subscription["id"])
    assert state["status"] == "active"
    assert (state["current_period_start"], state["current_period_end"]) == (
        "2026-02-28T10:00:00.000000Z",
        "2026-03-31T10:00:00.000000Z",
    )
    invoices = _invoices(api, subscription["id"])
    assert [(i["status"], i["billing_reason"]) for i in invoices] == [
        ("paid", "subscription_create"),
        ("paid", "subscription_cycle"),
    ]
    assert invoices[1]["payment"] == renewal.pk
    assert _events(subscription["id"]) == ["subscription.activated", "subscription.renewed"]

    # Stripe's own report of the charge arrives afterwards: nothing moves again.
    stripe_sends(client, fake_stripe, "payment_intent.succeeded", renewal.provider_payment_id)

    assert _events(subscription["id"]) == ["subscription.activated", "subscription.renewed"]
    assert _state(api, subscription["id"])["current_period_end"] == "2026-03-31T10:00:00.000000Z"
    assert len(fake_stripe.requests_to("POST", "/v1/payment_intents")) == 1
    assert _inbox("stripe")[-1] == ("payment_intent.succeeded", "processed")


def test_stripe_declined_renewal_is_past_due_then_the_retry_charges_again_and_renews(
    api, client, premium, clock, fake_stripe
):
    subscription = active_on_stripe(api, client, fake_stripe)
    kept = Subscription.objects.get(pk=subscription["id"])
    stripe_card_declines(fake_stripe, kept.payment_method_id, "insufficient_funds")

    clock.move_to(RENEWAL_DUE)
    subscriptions_run_due()

    state = _state(api, subscription["id"])
    assert state["status"] == "past_due"
    assert state["current_period_end"] == "2026-02-28T10:00:00.000000Z"
    [declined] = _renewals()
    assert (declined.status, declined.failure_code) == ("failed", "insufficient_funds")
    assert declined.failure_message == "Your card was declined."
    assert declined.provider_payment_id in fake_stripe.intents
    (charge,) = fake_stripe.requests_to("POST", "/v1/payment_intents")
    assert charge.header("Idempotency-Key") == f"charge-{declined.pk}"
    assert _invoices(api, subscription["id"])[1]["status"] == "open"
    assert _events(subscription["id"]) == ["subscription.activated", "subscription.past_due"]
    # Stripe's webhook about the failed PaymentIntent changes nothing more.
    stripe_sends(client, fake_stripe, "payment_intent.payment_failed", declined.provider_payment_id)
    assert _state(api, subscription["id"])["status"] == "past_due"
    assert _events(subscription["id"]) == ["subscription.activated", "subscription.past_due"]
    assert _inbox("stripe")[-1] == ("payment_intent.payment_failed", "processed")

    # The customer sorts the card out with the bank; the dunning retry goes through.
    stripe_card_declines(fake_stripe, kept.payment_method_id, None)
    clock.move_to(FIRST_RETRY)
    subscriptions_run_due()

    first, retry = _renewals()
    assert first.pk == declined.pk and retry.status == "succeeded"
    keys = [
        r.header("Idempotency-Key") for r in fake_stripe.requests_to("POST", "/v1/payment_intents")
    ]
    assert keys == [f"charge-{declined.pk}", f"charge-{retry.pk}"]
    state = _state(api, subscription["id"])
    assert state["status"] == "active"
    # Renewed from where the paid period ended, not from the day the retry went through.
    assert (state["current_period_start"], state["current_period_end"]) == (
        "2026-02-28T10:00:00.000000Z",
        "2026-03-31T10:00:00.000000Z",
    )
    assert [i["status"] for i in _invoices(api, subscription["id"])] == ["paid", "paid"]
    assert _events(subscription["id"])[-1] == "subscription.renewed"


# --- YooKassa -------------------------------------------------------------------------------


def yookassa_notifies(client, fake_yookassa, event: str, provider_payment_id: str) -> dict:
    """YooKassa posts a notification about the payment from one of its addresses."""
    payload = yookassa_tests.notification(event, fake_yookassa.payment(provider_payment_id))
    response = client.post(
        "/webhooks/yookassa",
        data=json.dumps(payload),
        content_type="application/json",
        REMOTE_ADDR=yookassa_tests.YOOKASSA_IP,
    )
    assert response.status_code == 200, response.content
    return response.json()


def active_on_yookassa(api, client, fake_yookassa) -> dict:
    """Subscribed with YooKassa, paid on its page, activated by its notification."""
    subscription = subscribe(api, "premium", provider="yookassa")
    payment = _first_payment(subscription)
    fake_yookassa.pay(payment.provider_payment_id)
    yookassa_notifies(client, fake_yookassa, "payment.succeeded", payment.provider_payment_id)
    state = _state(api, subscription["id"])
    assert state["status"] == "active", state
    return state


def test_yookassa_subscribe_pay_and_the_notification_activates_it_with_the_card_kept(
    api, client, premium, clock, fake_yookassa
):
    subscription = subscribe(api, "premium", provider="yookassa")

    assert (subscription["status"], subscription["provider"]) == ("incomplete", "yookassa")
    payment = _first_payment(subscription)
    (sent,) = fake_yookassa.requests_to("POST", "/v3/payments")
    assert sent.header("Idempotence-Key") == f"checkout-{payment.pk}"
    # YooKassa is asked to keep the card for later charges.
    assert sent.json["save_payment_method"] is True
    assert sent.json["capture"] is True
    assert sent.json["amount"] == {"value": "599.00", "currency": "RUB"}
    assert sent.json["confirmation"]["type"] == "redirect"
    remote = fake_yookassa.payment(payment.provider_payment_id)
    pay_link = client.get(subscription["checkout_url"].removeprefix("http://testserver"))
    assert (pay_link.status_code, pay_link["Location"]) == (
        302,
        remote["confirmation"]["confirmation_url"],
    )

    fake_yookassa.pay(payment.provider_payment_id)  # the buyer pays on YooKassa's page
    answer = yookassa_notifies(
        client, fake_yookassa, "payment.succeeded", payment.provider_payment_id
    )

    assert answer == {"received": True, "duplicate": False}
    # Only YooKassa's API is believed: the notification made us ask it.
    assert fake_yookassa.requests_to("GET", f"/v3/payments/{payment.provider_payment_id}")
    state = _state(api, subscription["id"])
    assert state["status"] == "active"
    assert (state["current_period_start"], state["current_period_end"]) == (
        "2026-01-31T10:00:00.000000Z",
        "2026-02-28T10:00:00.000000Z",
    )
    assert state["payment_method"] == {"type": "card", "brand": "visa", "last4": "4444"}
    assert state["checkout_url"] is None
    [invoice] = _invoices(api, subscription["id"])
    assert (invoice["status"], invoice["amount_paid"], invoice["payment"]) == (
        "paid",
        "599.00",
        payment.pk,
    )
    assert _events(subscription["id"]) == ["subscription.activated"]
    kept = Subscription.objects.get(pk=subscription["id"])
    paid = fake_yookassa.payment(payment.provider_payment_id)
    assert paid["payment_method"]["saved"] is True
    assert kept.payment_method_id == paid["payment_method"]["id"]
    assert kept.payment_method_id in fake_yookassa.saved_methods
    assert _inbox("yookassa") == [("payment.succeeded", "processed")]


def test_yookassa_renewal_charges_the_kept_card_once(api, client, premium, clock, fake_yookassa):
    subscription = active_on_yookassa(api, client, fake_yookassa)
    kept = Subscription.objects.get(pk=subscription["id"])

    clock.move_to(RENEWAL_DUE)
    subscriptions_run_due()
    subscriptions_run_due()

    [renewal] = _renewals()
    checkout, charge = fake_yookassa.requests_to("POST", "/v3/payments")
    assert charge.header("Idempotence-Key") == f"charge-{renewal.pk}"
    assert charge.json == {
        "amount": {"value": "599.00", "currency": "RUB"},
        "capture": True,
        "payment_method_id": kept.payment_method_id,
        "description": "Subscription to Premium",
        "metadata": {"payment_id": renewal.pk, "requested_amount": "599.00"},
    }
    assert (renewal.status, renewal.amount_captured) == ("succeeded", premium.amount)
    assert fake_yookassa.payment(renewal.provider_payment_id)["status"] == "succeeded"
    state = _state(api, subscription["id"])
    assert state["status"] == "active"
    assert (state["current_period_start"], state["current_period_end"]) == (
        "2026-02-28T10:00:00.000000Z",
        "2026-03-31T10:00:00.000000Z",
    )
    invoices = _invoices(api, subscription["id"])
    assert [(i["status"], i["billing_reason"]) for i in invoices] == [
        ("paid", "subscription_create"),
        ("paid", "subscription_cycle"),
    ]
    assert invoices[1]["payment"] == renewal.pk
    assert _events(subscription["id"]) == ["subscription.activated", "subscription.renewed"]

    # YooKassa's notification about the charge arrives afterwards: nothing moves again.
    yookassa_notifies(client, fake_yookassa, "payment.succeeded", renewal.provider_payment_id)

    assert _events(subscription["id"]) == ["subscription.activated", "subscription.renewed"]
    assert _state(api, subscription["id"])["current_period_end"] == "2026-03-31T10:00:00.000000Z"
    assert len(fake_yookassa.requests_to("POST", "/v3/payments")) == 2
    assert _inbox("yookassa")[-1] == ("payment.succeeded", "processed")


def test_yookassa_declined_renewal_makes_the_subscription_past_due_with_the_reason(
    api, client, premium, clock, fake_yookassa
):
    subscription = active_on_yookassa(api, client, fake_yookassa)
    kept = Subscription.objects.get(pk=subscription["id"])
    fake_yookassa.decline_saved_method(kept.payment_method_id, "insufficient_funds")

    clock.move_to(RENEWAL_DUE)
    subscriptions_run_due()

    state = _state(api, subscription["id"])
    assert state["status"] == "past_due"
    assert state["current_period_end"] == "2026-02-28T10:00:00.000000Z"
    [declined] = _renewals()
    assert (declined.status, declined.failure_code) == ("failed", "insufficient_funds")
    assert declined.failure_message == "Insufficient funds."
    charge = fake_yookassa.requests_to("POST", "/v3/payments")[-1]
    assert charge.header("Idempotence-Key") == f"charge-{declined.pk}"
    assert charge.json["payment_method_id"] == kept.payment_method_id
    assert fake_yookassa.payment(declined.provider_payment_id)["status"] == "canceled"
    assert _invoices(api, subscription["id"])[1]["status"] == "open"
    assert _events(subscription["id"]) == ["subscription.activated", "subscription.past_due"]

    # YooKassa's notification of the canceled payment changes nothing more.
    yookassa_notifies(client, fake_yookassa, "payment.canceled", declined.provider_payment_id)

    assert _state(api, subscription["id"])["status"] == "past_due"
    assert _events(subscription["id"]) == ["subscription.activated", "subscription.past_due"]
    assert len(_renewals()) == 1
    assert _inbox("yookassa")[-1] == ("payment.canceled", "processed")


def answer_charges_pending(fake_yookassa) -> dict[str, dict]:
    """
    From now on YooKassa answers saved-card charges `pending`, as it may (waiting for the
    bank, or for the receipt to be registered first); returns what each becomes, by id.
    """
    create = fake_yookassa._payment_create
    outcomes: dict[str, dict] = {}

    def pending(*, body):
        made = create(body=body)
        if "payment_method_id" in body:
            outcomes[made["id"]] = copy.deepcopy(made)
            for settled in ("captured_at", "income_amount", "refunded_amount"):
                made.pop(settled, None)
            made.update(status="pending", paid=False, refundable=False)
        return made

    fake_yookassa._payment_create = pending
    return outcomes


def test_yookassa_renewal_answered_pending_renews_when_its_notification_arrives(
    api, client, premium, clock, fake_yookassa
):
    subscription = active_on_yookassa(api, client, fake_yookassa)
    outcomes = answer_charges_pending(fake_yookassa)
    clock.move_to(RENEWAL_DUE)

    subscriptions_run_due()

    [renewal] = _renewals()
    assert renewal.status == "pending"
    assert renewal.provider_payment_id in outcomes  # YooKassa's id, kept from its answer
    state = _state(api, subscription["id"])
    assert (state["status"], state["current_period_end"]) == (
        "active",
        "2026-02-28T10:00:00.000000Z",
    )
    assert state["checkout_url"] is None  # nothing for the customer to do
    clock.move_to("2026-02-28 09:45:00+00:00")
    subscriptions_run_due()  # the charge is still in flight: no second one beside it
    assert len(fake_yookassa.requests_to("POST", "/v3/payments")) == 2

    fake_yookassa.payments[renewal.provider_payment_id] = outcomes[renewal.provider_payment_id]
    yookassa_notifies(client, fake_yookassa, "payment.succeeded", renewal.provider_payment_id)

    renewal.refresh_from_db()
    assert (renewal.status, renewal.amount_captured) == ("succeeded", premium.amount)
    state = _state(api, subscription["id"])
    assert (state["status"], state["current_period_end"]) == (
        "active",
        "2026-03-31T10:00:00.000000Z",
    )
    assert [i["status"] for i in _invoices(api, subscription["id"])] == ["paid", "paid"]
    assert _events(subscription["id"]) == ["subscription.activated", "subscription.renewed"]


def test_yookassa_renewal_of_a_merchant_with_receipts_carries_a_receipt(
    api, client, merchant, premium, clock, fake_yookassa
):
    merchant.receipts_enabled = True
    merchant.save(update_fields=["receipts_enabled"])
    subscription = active_on_yookassa(api, client, fake_yookassa)
    checkout = fake_yookassa.requests_to("POST", "/v3/payments")[0]
    assert checkout.json["receipt"]["customer"] == {"email": "viewer@example.com"}
    assert checkout.json["receipt"]["items"][0]["amount"] == {"value": "599.00", "currency": "RUB"}

    clock.move_to(RENEWAL_DUE)
    subscriptions_run_due()

    assert _state(api, subscription["id"])["current_period_end"] == "2026-03-31T10:00:00.000000Z"
    charge = fake_yookassa.requests_to("POST", "/v3/payments")[-1]
    assert "payment_method_id" in charge.json
    # Every payment of a shop with 54-FZ receipts registers one: renewals too.
    assert charge.json.get("receipt") == {
        "customer": {"email": "viewer@example.com"},
        "items": [
            {
                "description": "Premium subscription, 2026-02-28 – 2026-03-31",
                "quantity": "1.00",
                "amount": {"value": "599.00", "currency": "RUB"},
                "vat_code": 1,
                "payment_subject": "service",
                "payment_mode": "full_payment",
            }
        ],
    }


def test_stripe_renewal_the_bank_wants_confirmed_gets_a_pay_link_at_once(
    api, client, premium, clock, fake_stripe
):
    subscription = active_on_stripe(api, client, fake_stripe)
    kept = Subscription.objects.get(pk=subscription["id"])
    stripe_card_declines(fake_stripe, kept.payment_method_id, "authentication_required")

    clock.move_to(RENEWAL_DUE)
    subscriptions_run_due()  # the off-session charge: the bank asks for 3-D Secure
    clock.shift(60)
    subscriptions_run_due()  # the next run, a minute later, not days

    state = _state(api, subscription["id"])
    assert state["status"] == "past_due"
    [declined] = _renewals()
    assert declined.failure_code == "authentication_required"
    link = Payment.objects.filter(off_session=False).order_by("-id").first()
    assert state["checkout_url"] == f"http://testserver/pay/{link.pk}"
    assert (link.status, link.save_payment_method) == ("pending", True)
    # Checkout was opened for the customer to confirm; no second silent charge was tried.
    assert len(fake_stripe.requests_to("POST", "/v1/payment_intents")) == 1
    assert len(fake_stripe.requests_to("POST", "/v1/checkout/sessions")) == 2

    fake_stripe.complete_session(link.provider_checkout_id)
    stripe_sends(client, fake_stripe, "checkout.session.completed", link.provider_checkout_id)

    state = _state(api, subscription["id"])
    assert (state["status"], state["current_period_end"]) == (
        "active",
        "2026-03-31T10:00:00.000000Z",
    )
    assert _events(subscription["id"])[-1] == "subscription.renewed"
