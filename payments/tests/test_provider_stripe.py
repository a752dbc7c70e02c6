"""
The Stripe adapter through the real `stripe` SDK, against a fake Stripe on 127.0.0.1
(`payments.tests.fakes.stripe_server`) that checks and records the wire format: paths,
bearer auth, idempotency keys, form encoding, object and error shapes. Webhooks are signed
with the SDK's own helper, exactly as Stripe signs them.
"""

import json
import socket
import time
from decimal import Decimal

import pytest
import stripe

from payments.models import Payment, PaymentEvent
from payments.providers import stripe as stripe_adapter
from payments.providers.base import (
    CheckoutRequest,
    ProviderDeclined,
    ProviderTransientError,
    SavedMethodCharge,
    WebhookVerificationError,
)
from payments.providers.stripe import StripeProvider
from payments.tests.fakes.stripe_server import FakeStripe, error_body
from payments.tests.test_authentication import assert_error
from webhooks.models import InboundWebhook

SECRET_KEY = "sk_test_51FakeKeyForContractTests0000000000"
PUBLISHABLE_KEY = "pk_test_51FakeKeyForContractTests0000000000"
WEBHOOK_SECRET = "whsec_test_contract_tests_0123456789abcdef"
WEBHOOK_URL = "/webhooks/stripe"


@pytest.fixture
def fake_stripe(settings):
    fake = FakeStripe(secret_key=SECRET_KEY).start()
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_PUBLISHABLE_KEY = PUBLISHABLE_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = fake.url
    settings.PROVIDER_TIMEOUT_SECONDS = 1
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _quick_sdk_backoff(monkeypatch):
    # The SDK waits 0.5 s and more between its retries; these tests check that it retries
    # and with what, not how long it waits.
    monkeypatch.setattr(stripe.HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(stripe.HTTPClient, "MAX_DELAY", 0.02)


@pytest.fixture
def provider(fake_stripe):
    return StripeProvider()


def checkout_request(**overrides) -> CheckoutRequest:
    fields = {
        "payment_id": "pay_test123",
        "amount": Decimal("599.00"),
        "currency": "RUB",
        "capture": True,
        "return_url": "http://testserver/pay/pay_test123?returned=1",
        "metadata": {"payment_id": "pay_test123"},
    }
    fields.update(overrides)
    return CheckoutRequest(**fields)


def paid_intent(fake, provider, **overrides) -> str:
    """A PaymentIntent the buyer paid (or authorized) on Checkout; returns its id."""
    result = provider.checkout_create(checkout_request(**overrides), idempotency_key="k-paid")
    return fake.complete_session(result.checkout_id)["payment_intent"]


# --- Checkout -------------------------------------------------------------------------------


def test_checkout_create_speaks_stripes_wire_format(fake_stripe, provider):
    result = provider.checkout_create(
        checkout_request(description="Premium plan"), idempotency_key="checkout-pay_test123"
    )

    (sent,) = fake_stripe.requests
    assert (sent.method, sent.path) == ("POST", "/v1/checkout/sessions")
    assert sent.header("Authorization") == f"Bearer {SECRET_KEY}"
    assert sent.header("Idempotency-Key") == "checkout-pay_test123"
    assert sent.header("Content-Type") == "application/x-www-form-urlencoded"
    assert sent.header("Stripe-Version")
    assert "line_items[0][price_data][unit_amount]=59900" in sent.body
    form = sent.form
    assert form["mode"] == "payment"
    assert form["line_items"] == [
        {
            "quantity": "1",
            "price_data": {
                "currency": "rub",
                "unit_amount": "59900",
                "product_data": {"name": "Premium plan"},
            },
        }
    ]
    assert (
        form["success_url"] == form["cancel_url"] == "http://testserver/pay/pay_test123?returned=1"
    )
    assert form["client_reference_id"] == "pay_test123"
    assert form["metadata"] == {"payment_id": "pay_test123"}
    assert form["payment_intent_data"] == {
        "metadata": {"payment_id": "pay_test123"},
        "description": "Premium plan",
    }
    assert form["adaptive_pricing"] == {"enabled": "false"}
    assert "customer_creation" not in form
    session = fake_stripe.sessions[result.checkout_id]
    assert result.checkout_id.startswith("cs_test_")
    assert result.checkout_url == session["url"]
    assert result.checkout_url.startswith("https://checkout.stripe.com/c/pay/cs_test_")
    # Stripe makes the PaymentIntent when the buyer confirms: none to report yet.
    assert result.provider_payment_id == ""


@pytest.mark.parametrize(
    "currency, amount, unit_amount",
    [
        ("RUB", "599.00", "59900"),
        ("JPY", "100", "100"),
        ("KWD", "1.500", "1500"),
        ("USD", "0.01", "1"),
        # Stripe's special cases: whole krónur counted in hundredths, whole ariary as is.
        ("ISK", "500", "50000"),
        ("MGA", "599.00", "599"),
    ],
)
def test_amounts_go_out_in_stripes_minor_units(
    fake_stripe, provider, currency, amount, unit_amount
):
    provider.checkout_create(
        checkout_request(amount=Decimal(amount), currency=currency), idempotency_key="k"
    )

    price = fake_stripe.requests[-1].form["line_items"][0]["price_data"]
    assert (price["currency"], price["unit_amount"]) == (currency.lower(), unit_amount)


@pytest.mark.parametrize(
    "currency, amount", [("KWD", "1.505"), ("MGA", "599.50"), ("RUB", "599.001")]
)
def test_amounts_stripe_cannot_take_are_refused_before_any_call(
    fake_stripe, provider, currency, amount
):
    with pytest.raises(ProviderDeclined) as excinfo:
        provider.checkout_create(
            checkout_request(amount=Decimal(amount), currency=currency), idempotency_key="k"
        )

    assert excinfo.value.code == "amount_not_supported"
    assert fake_stripe.requests == []


def test_checkout_for_an_authorization_with_a_saved_card(fake_stripe, provider):
    provider.checkout_create(
        checkout_request(capture=False, save_payment_method=True, customer_email="a@b.example"),
        idempotency_key="k",
    )

    form = fake_stripe.requests[-1].form
    assert form["payment_intent_data"]["capture_method"] == "manual"
    assert form["payment_intent_data"]["setup_future_usage"] == "off_session"
    assert form["customer_creation"] == "always"
    assert form["customer_email"] == "a@b.example"
    assert form["line_items"][0]["price_data"]["product_data"]["name"] == "Payment pay_test123"


def test_the_same_key_gets_the_same_session(fake_stripe, provider):
    first = provider.checkout_create(checkout_request(), idempotency_key="checkout-pay_test123")
    again = provider.checkout_create(checkout_request(), idempotency_key="checkout-pay_test123")

    assert again == first
    assert len(fake_stripe.sessions) == 1
    assert len(fake_stripe.requests) == 2


# --- Retrieve, capture, cancel, refund -----------------------------------------------------


def test_retrieve_reports_the_paid_intent_with_its_card(fake_stripe, provider):
    intent_id = paid_intent(fake_stripe, provider)

    payment = provider.payment_retrieve(intent_id)

    sent = fake_stripe.requests[-1]
    assert (sent.method, sent.path) == ("GET", f"/v1/payment_intents/{intent_id}")
    assert sent.query == {"expand": ["latest_charge"]}
    intent = fake_stripe.intents[intent_id]
    assert payment.provider_payment_id == intent_id
    assert payment.reference == "pay_test123"
    assert payment.status == "succeeded"
    assert (payment.amount, payment.currency) == (Decimal("599.00"), "RUB")
    assert payment.amount_captured == Decimal("599.00")
    assert payment.payment_method_id == intent["payment_method"]
    assert payment.payment_method_types == ("card",)
    assert (payment.card_brand, payment.card_last4) == ("visa", "4242")


def test_retrieve_of_a_session_not_yet_paid_is_pending_without_an_intent(fake_stripe, provider):
    result = provider.checkout_create(checkout_request(), idempotency_key="k")

    payment = provider.payment_retrieve(result.checkout_id)

    assert (payment.status, payment.provider_payment_id) == ("pending", "")
    assert (payment.reference, payment.amount) == ("pay_test123", Decimal("599.00"))


def test_retrieve_of_an_unknown_intent_is_declined_with_stripes_code(fake_stripe, provider):
    with pytest.raises(ProviderDeclined) as excinfo:
        provider.payment_retrieve("pi_doesnotexist")

    assert excinfo.value.code == "resource_missing"
    assert "No such payment_intent" in excinfo.value.message


def test_capture_of_part_of_an_authorization(fake_stripe, provider):
    intent_id = paid_intent(fake_stripe, provider, capture=False)
    assert provider.payment_retrieve(intent_id).status == "requires_capture"

    payment = provider.payment_capture(intent_id, Decimal("500.00"), idempotency_key="capture-1")

    sent = fake_stripe.requests[-1]
    assert (sent.method, sent.path) == ("POST", f"/v1/payment_intents/{intent_id}/capture")
    assert sent.header("Idempotency-Key") == "capture-1"
    assert sent.form["amount_to_capture"] == "50000"
    assert (payment.status, payment.amount_captured) == ("succeeded", Decimal("500.00"))
    assert payment.card_last4 == "4242"
    assert fake_stripe.intents[intent_id]["amount_received"] == 50000


def test_capture_of_a_payment_already_captured_is_declined(fake_stripe, provider):
    intent_id = paid_intent(fake_stripe, provider)

    with pytest.raises(ProviderDeclined) as excinfo:
        provider.payment_capture(intent_id, Decimal("599.00"), idempotency_key="capture-1")

    assert excinfo.value.code == "payment_intent_unexpected_state"


def test_cancel_while_the_buyer_has_not_paid_expires_the_session(fake_stripe, provider):
    result = provider.checkout_create(checkout_request(), idempotency_key="k")

    payment = provider.payment_cancel(
        "", idempotency_key="cancel-pay_test123", checkout_id=result.checkout_id
    )

    sent = fake_stripe.requests[-1]
    assert (sent.method, sent.path) == (
        "POST",
        f"/v1/checkout/sessions/{result.checkout_id}/expire",
    )
    assert sent.header("Idempotency-Key") == "cancel-pay_test123-expire"
    assert fake_stripe.sessions[result.checkout_id]["status"] == "expired"
    assert (payment.status, payment.provider_payment_id) == ("canceled", "")


def test_cancel_after_a_declined_attempt_expires_the_session_and_its_intent(fake_stripe, provider):
    result = provider.checkout_create(checkout_request(), idempotency_key="k")
    intent = fake_stripe.fail_session_attempt(result.checkout_id)

    payment = provider.payment_cancel(
        intent["id"], idempotency_key="cancel-1", checkout_id=result.checkout_id
    )

    assert fake_stripe.sessions[result.checkout_id]["status"] == "expired"
    assert fake_stripe.intents[intent["id"]]["status"] == "canceled"
    assert (payment.status, payment.provider_payment_id) == ("canceled", intent["id"])
    assert not fake_stripe.requests_to("POST", f"/v1/payment_intents/{intent['id']}/cancel")


def test_cancel_of_an_authorization_voids_the_intent(fake_stripe, provider):
    result = provider.checkout_create(checkout_request(capture=False), idempotency_key="k")
    intent_id = fake_stripe.complete_session(result.checkout_id)["payment_intent"]

    payment = provider.payment_cancel(
        intent_id, idempotency_key="cancel-1", checkout_id=result.checkout_id
    )

    sent = fake_stripe.requests[-1]
    assert (sent.method, sent.path) == ("POST", f"/v1/payment_intents/{intent_id}/cancel")
    assert sent.header("Idempotency-Key") == "cancel-1"
    assert payment.status == "canceled"
    assert fake_stripe.intents[intent_id]["status"] == "canceled"


def test_cancel_retried_after_the_session_expired_needs_no_call(fake_stripe, provider):
    result = provider.checkout_create(checkout_request(), idempotency_key="k")
    provider.payment_cancel("", idempotency_key="cancel-1", checkout_id=result.checkout_id)
    posts_before = len([r for r in fake_stripe.requests if r.method == "POST"])

    payment = provider.payment_cancel(
        "", idempotency_key="cancel-1", checkout_id=result.checkout_id
    )

    assert payment.status == "canceled"
    assert len([r for r in fake_stripe.requests if r.method == "POST"]) == posts_before


def test_cancel_of_a_paid_payment_is_declined(fake_stripe, provider):
    result = provider.checkout_create(checkout_request(), idempotency_key="k")
    intent_id = fake_stripe.complete_session(result.checkout_id)["payment_intent"]

    with pytest.raises(ProviderDeclined) as excinfo:
        provider.payment_cancel(intent_id, idempotency_key="c", checkout_id=result.checkout_id)

    assert excinfo.value.code == "payment_intent_unexpected_state"


def test_partial_then_full_refund(fake_stripe, provider):
    intent_id = paid_intent(fake_stripe, provider)

    first = provider.refund_create(
        intent_id, Decimal("200.00"), "RUB", idempotency_key="refund-1", reason="duplicate"
    )
    rest = provider.refund_create(
        intent_id, Decimal("399.00"), "RUB", idempotency_key="refund-2", reason="Item broken"
    )

    first_sent, rest_sent = fake_stripe.requests_to("POST", "/v1/refunds")
    assert first_sent.header("Idempotency-Key") == "refund-1"
    assert first_sent.form == {
        "payment_intent": intent_id,
        "amount": "20000",
        "reason": "duplicate",
    }
    # Stripe takes three reasons only; ours travels as metadata instead.
    assert rest_sent.form["metadata"] == {"reason": "Item broken"}
    assert "reason" not in rest_sent.form
    assert first.provider_refund_id.startswith("re_")
    assert (first.provider_payment_id, first.status) == (intent_id, "succeeded")
    assert (first.amount, first.currency) == (Decimal("200.00"), "RUB")
    assert rest.amount == Decimal("399.00")
    assert provider.payment_retrieve(intent_id).amount_refunded == Decimal("599.00")


def test_refund_beyond_what_is_left_is_declined(fake_stripe, provider):
    intent_id = paid_intent(fake_stripe, provider)

    with pytest.raises(ProviderDeclined) as excinfo:
        provider.refund_create(intent_id, Decimal("600.00"), "RUB", idempotency_key="r")

    assert excinfo.value.code == "amount_too_large"


def test_a_pending_refund_is_reported_pending(fake_stripe, provider):
    intent_id = paid_intent(fake_stripe, provider)
    fake_stripe.refund_status = "pending"

    refund = provider.refund_create(intent_id, Decimal("1.00"), "RUB", idempotency_key="r")

    assert refund.status == "pending"


# --- Saved payment methods ------------------------------------------------------------------


def saved_charge(method: dict, **overrides) -> SavedMethodCharge:
    fields = {
        "payment_id": "pay_renewal1",
        "amount": Decimal("299.00"),
        "currency": "RUB",
        "payment_method_id": method["id"],
        "provider_customer_id": method["customer"],
        "description": "Pro plan, March",
    }
    fields.update(overrides)
    return SavedMethodCharge(**fields)


def test_checkout_saves_a_card_that_renewals_then_charge_off_session(fake_stripe, provider):
    result = provider.checkout_create(
        checkout_request(save_payment_method=True), idempotency_key="k"
    )
    intent_id = fake_stripe.complete_session(result.checkout_id)["payment_intent"]
    first = provider.payment_retrieve(intent_id)
    assert first.provider_customer_id.startswith("cus_")
    assert first.payment_method_id.startswith("pm_")
    method = {"id": first.payment_method_id, "customer": first.provider_customer_id}

    renewal = provider.charge_saved_method(saved_charge(method), idempotency_key="renew-1")

    sent = fake_stripe.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/payment_intents")
    assert sent.header("Idempotency-Key") == "renew-1"
    assert sent.form["amount"] == "29900"
    assert sent.form["currency"] == "rub"
    assert sent.form["customer"] == first.provider_customer_id
    assert sent.form["payment_method"] == first.payment_method_id
    assert (sent.form["off_session"], sent.form["confirm"]) == ("true", "true")
    assert sent.form["metadata"]["payment_id"] == "pay_renewal1"
    assert renewal.status == "succeeded"
    assert renewal.reference == "pay_renewal1"
    assert renewal.amount_captured == Decimal("299.00")
    assert renewal.card_last4 == "4242"


def test_a_declined_off_session_charge_is_returned_as_failed(fake_stripe, provider):
    method = fake_stripe.saved_method(decline_code="insufficient_funds", last4="9995")

    payment = provider.charge_saved_method(saved_charge(method), idempotency_key="renew-1")

    assert payment.status == "failed"
    assert payment.failure_code == "insufficient_funds"
    assert payment.failure_message == "Your card was declined."
    assert payment.reference == "pay_renewal1"
    assert payment.provider_payment_id in fake_stripe.intents
    assert payment.amount == Decimal("299.00")


def test_a_retried_declined_charge_gets_the_same_answer_and_charges_nothing_new(
    fake_stripe, provider
):
    method = fake_stripe.saved_method(decline_code="insufficient_funds")
    first = provider.charge_saved_method(saved_charge(method), idempotency_key="renew-1")

    again = provider.charge_saved_method(saved_charge(method), idempotency_key="renew-1")

    assert again == first
    assert len(fake_stripe.intents) == 1


def test_a_charge_needing_the_buyer_is_failed_with_that_code(fake_stripe, provider):
    method = fake_stripe.saved_method(
        error_code="authentication_required", decline_code="authentication_required"
    )

    payment = provider.charge_saved_method(saved_charge(method), idempotency_key="renew-1")

    assert (payment.status, payment.failure_code) == ("failed", "authentication_required")


def test_a_detached_method_is_declined_not_failed(fake_stripe, provider):
    with pytest.raises(ProviderDeclined) as excinfo:
        provider.charge_saved_method(
            saved_charge({"id": "pm_gone", "customer": "cus_x"}), idempotency_key="renew-1"
        )

    assert excinfo.value.code == "resource_missing"


def test_every_post_carries_our_idempotency_key(fake_stripe, provider):
    authorized = provider.checkout_create(checkout_request(capture=False), idempotency_key="k1")
    intent_id = fake_stripe.complete_session(authorized.checkout_id)["payment_intent"]
    provider.payment_capture(intent_id, Decimal("599.00"), idempotency_key="k2")
    provider.refund_create(intent_id, Decimal("1.00"), "RUB", idempotency_key="k3")
    open_one = provider.checkout_create(
        checkout_request(payment_id="pay_other"), idempotency_key="k4"
    )
    provider.payment_cancel("", idempotency_key="k5", checkout_id=open_one.checkout_id)
    method = fake_stripe.saved_method()
    provider.charge_saved_method(saved_charge(method), idempotency_key="k6")

    posts = [r for r in fake_stripe.requests if r.method == "POST"]

    # Never one the SDK made up: a retry of ours must be recognised as the same request.
    assert [r.header("Idempotency-Key") for r in posts] == [
        "k1",
        "k2",
        "k3",
        "k4",
        "k5-expire",
        "k6",
    ]


# --- Failures -------------------------------------------------------------------------------


def test_a_4xx_is_declined_with_stripes_code(fake_stripe, provider):
    fake_stripe.respond_next(
        400,
        error_body(
            "invalid_request_error",
            "Invalid integer: 59900.5",
            code="parameter_invalid_integer",
            param="line_items[0][price_data][unit_amount]",
        ),
    )

    with pytest.raises(ProviderDeclined) as excinfo:
        provider.checkout_create(checkout_request(), idempotency_key="k")

    assert excinfo.value.code == "parameter_invalid_integer"
    assert excinfo.value.message == "Invalid integer: 59900.5"
    assert len(fake_stripe.requests) == 1  # a refusal is not retried


def test_a_5xx_is_retried_with_the_same_key_then_transient(fake_stripe, provider):
    fake_stripe.respond_next(500, times=3)

    with pytest.raises(ProviderTransientError) as excinfo:
        provider.checkout_create(checkout_request(), idempotency_key="checkout-pay_test123")

    assert excinfo.value.code == "provider_error"
    keys = {r.header("Idempotency-Key") for r in fake_stripe.requests}
    assert len(fake_stripe.requests) == 1 + stripe_adapter.MAX_NETWORK_RETRIES
    assert keys == {"checkout-pay_test123"}
    assert fake_stripe.sessions == {}


def test_a_5xx_that_passes_is_absorbed_by_the_sdks_retry(fake_stripe, provider):
    fake_stripe.respond_next(503)

    result = provider.checkout_create(checkout_request(), idempotency_key="checkout-1")

    assert result.checkout_id in fake_stripe.sessions
    assert [r.header("Idempotency-Key") for r in fake_stripe.requests] == ["checkout-1"] * 2


def test_a_timeout_is_transient(fake_stripe, provider, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.2
    fake_stripe.delay(1.0)

    started = time.monotonic()
    with pytest.raises(ProviderTransientError) as excinfo:
        provider.checkout_create(checkout_request(), idempotency_key="k")

    assert excinfo.value.code == "provider_unreachable"
    assert len(fake_stripe.requests) == 1 + stripe_adapter.MAX_NETWORK_RETRIES
    assert time.monotonic() - started < 3  # bounded: three short waits, not three long ones


def test_connection_refused_is_transient(fake_stripe, provider, settings):
    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"

    with pytest.raises(ProviderTransientError) as excinfo:
        provider.payment_retrieve("pi_123")

    assert excinfo.value.code == "provider_unreachable"


def test_rate_limiting_is_transient(fake_stripe, provider):
    fake_stripe.respond_next(
        429,
        error_body("invalid_request_error", "Too many requests.", code="rate_limit"),
    )

    with pytest.raises(ProviderTransientError) as excinfo:
        provider.payment_retrieve("pi_123")

    assert excinfo.value.code == "rate_limited"


def test_a_rejected_api_key_is_transient_and_not_retried(fake_stripe, provider, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_revoked000000000000000000"

    with pytest.raises(ProviderTransientError) as excinfo:
        provider.checkout_create(checkout_request(), idempotency_key="k")

    assert excinfo.value.code == "provider_authentication_failed"
    assert "Invalid API Key" in excinfo.value.message
    assert len(fake_stripe.requests) == 1


def test_livemode_follows_the_key(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_abc"
    assert StripeProvider().livemode is False
    settings.STRIPE_SECRET_KEY = "sk_live_abc"
    assert StripeProvider().livemode is True


# --- Webhook verification --------------------------------------------------------------------


def signed(event: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None):
    """The body and header Stripe would send, signed by the SDK's own helper."""
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return body, {"Stripe-Signature": header}


def test_verify_returns_the_payload_of_a_correctly_signed_request(fake_stripe, provider):
    event = {"id": "evt_1", "object": "event", "type": "customer.created", "data": {}}
    body, headers = signed(event)

    assert provider.webhook_verify(body.encode(), headers, "203.0.113.9") == event
    lowercase = {"stripe-signature": headers["Stripe-Signature"]}
    assert provider.webhook_verify(body.encode(), lowercase, "") == event


@pytest.mark.parametrize(
    "spoil",
    [
        lambda body, headers: (body, signed(json.loads(body), secret="whsec_other")[1]),
        lambda body, headers: (body, {}),
        lambda body, headers: (body.replace("evt_1", "evt_2"), headers),
        lambda body, headers: (
            body,
            signed(json.loads(body), timestamp=int(time.time()) - 301)[1],
        ),
    ],
    ids=["other-secret", "no-header", "body-changed", "older-than-300s"],
)
def test_verify_refuses_what_stripe_did_not_sign_just_now(fake_stripe, provider, spoil):
    body, headers = spoil(*signed({"id": "evt_1", "type": "x", "data": {}}))

    with pytest.raises(WebhookVerificationError, match="signature"):
        provider.webhook_verify(body.encode(), headers, "")


def test_verify_refuses_everything_without_a_configured_secret(fake_stripe, provider, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    body, headers = signed({"id": "evt_1", "type": "x"}, secret="")

    with pytest.raises(WebhookVerificationError):
        provider.webhook_verify(body.encode(), headers, "")


# --- Webhook events -------------------------------------------------------------------------


def test_checkout_completed_reports_the_intent_fetched_from_stripe(fake_stripe, provider):
    result = provider.checkout_create(checkout_request(), idempotency_key="k")
    session = fake_stripe.complete_session(result.checkout_id)
    event = fake_stripe.event("checkout.session.completed", result.checkout_id)

    reported = provider.webhook_event(event)

    assert (reported.event_id, reported.type) == (event["id"], "checkout.session.completed")
    assert fake_stripe.requests[-1].path == f"/v1/payment_intents/{session['payment_intent']}"
    payment = reported.payment
    assert (payment.provider_payment_id, payment.reference) == (
        session["payment_intent"],
        "pay_test123",
    )
    assert (payment.status, payment.card_brand, payment.card_last4) == (
        "succeeded",
        "visa",
        "4242",
    )
    assert reported.refund is None


def test_checkout_completed_for_an_authorization_is_requires_capture(fake_stripe, provider):
    result = provider.checkout_create(checkout_request(capture=False), idempotency_key="k")
    fake_stripe.complete_session(result.checkout_id)

    reported = provider.webhook_event(
        fake_stripe.event("checkout.session.completed", result.checkout_id)
    )

    assert reported.payment.status == "requires_capture"


def test_an_expired_session_nobody_paid_is_canceled_without_a_call(fake_stripe, provider):
    result = provider.checkout_create(checkout_request(), idempotency_key="k")
    fake_stripe.sessions[result.checkout_id]["status"] = "expired"
    calls = len(fake_stripe.requests)

    reported = provider.webhook_event(
        fake_stripe.event("checkout.session.expired", result.checkout_id)
    )

    assert len(fake_stripe.requests) == calls
    assert reported.payment.status == "canceled"
    assert reported.payment.failure_code == "checkout_expired"
    assert reported.payment.provider_payment_id == ""
    assert reported.payment.amount == Decimal("599.00")


def test_an_async_payment_that_failed_after_checkout_is_failed(fake_stripe, provider):
    result = provider.checkout_create(checkout_request(), idempotency_key="k")
    intent = fake_stripe.fail_session_attempt(
        result.checkout_id, decline_code="debit_not_authorized"
    )
    fake_stripe.sessions[result.checkout_id]["status"] = "complete"

    reported = provider.webhook_event(
        fake_stripe.event("checkout.session.async_payment_failed", result.checkout_id)
    )

    assert reported.payment.provider_payment_id == intent["id"]
    assert (reported.payment.status, reported.payment.failure_code) == (
        "failed",
        "debit_not_authorized",
    )


def test_a_declined_attempt_on_checkout_is_not_final(fake_stripe, provider):
    # The buyer can try another card on the same page, so the payment stays pending.
    result = provider.checkout_create(checkout_request(), idempotency_key="k")
    intent = fake_stripe.fail_session_attempt(result.checkout_id)

    reported = provider.webhook_event(
        fake_stripe.event("payment_intent.payment_failed", intent["id"])
    )

    assert reported.payment.status == "pending"
    assert reported.payment.failure_code == ""


def test_a_declined_off_session_intent_is_failed(fake_stripe, provider):
    method = fake_stripe.saved_method(decline_code="expired_card")
    charged = provider.charge_saved_method(saved_charge(method), idempotency_key="renew-1")

    reported = provider.webhook_event(
        fake_stripe.event("payment_intent.payment_failed", charged.provider_payment_id)
    )

    assert (reported.payment.status, reported.payment.failure_code) == ("failed", "expired_card")
    assert reported.payment.reference == "pay_renewal1"


@pytest.mark.parametrize(
    "event_type, capture, status",
    [
        ("payment_intent.succeeded", True, "succeeded"),
        ("payment_intent.amount_capturable_updated", False, "requires_capture"),
    ],
)
def test_payment_intent_events_are_read_from_the_payload(
    fake_stripe, provider, event_type, capture, status
):
    intent_id = paid_intent(fake_stripe, provider, capture=capture)
    event = fake_stripe.event(event_type, intent_id)
    calls = len(fake_stripe.requests)

    reported = provider.webhook_event(event)

    assert len(fake_stripe.requests) == calls
    assert (reported.payment.provider_payment_id, reported.payment.status) == (intent_id, status)
    assert reported.payment.reference == "pay_test123"


def test_payment_intent_canceled(fake_stripe, provider):
    intent_id = paid_intent(fake_stripe, provider, capture=False)
    provider.payment_cancel(intent_id, idempotency_key="c")

    reported = provider.webhook_event(fake_stripe.event("payment_intent.canceled", intent_id))

    assert reported.payment.status == "canceled"


def test_an_intent_that_is_not_ours_is_not_reported(fake_stripe, provider):
    intent_id = paid_intent(fake_stripe, provider)
    event = fake_stripe.event("payment_intent.succeeded", intent_id)
    event["data"]["object"]["metadata"] = {}

    assert provider.webhook_event(event).payment is None


def test_refund_events_report_the_refund_and_no_payment(fake_stripe, provider):
    intent_id = paid_intent(fake_stripe, provider)
    refund = provider.refund_create(intent_id, Decimal("100.00"), "RUB", idempotency_key="r")
    charge_id = fake_stripe.intents[intent_id]["latest_charge"]

    refunded = provider.webhook_event(fake_stripe.event("charge.refunded", charge_id))
    updated = provider.webhook_event(fake_stripe.event("refund.updated", refund.provider_refund_id))
    fake_stripe.fail_refund(refund.provider_refund_id)
    failed = provider.webhook_event(fake_stripe.event("refund.failed", refund.provider_refund_id))

    # charge.refunded does not carry the refund on current API versions: it is listed.
    listed = fake_stripe.requests_to("GET", "/v1/refunds")[-1]
    assert listed.query == {"charge": charge_id, "limit": "1"}
    assert refunded.refund == refund
    assert updated.refund == refund
    assert (failed.refund.status, failed.refund.failure_reason) == (
        "failed",
        "expired_or_canceled_card",
    )
    assert (refunded.payment, updated.payment, failed.payment) == (None, None, None)


def test_unknown_event_types_carry_nothing_to_act_on(fake_stripe, provider):
    reported = provider.webhook_event(
        {"id": "evt_1", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}
    )

    assert (reported.event_id, reported.payment, reported.refund) == ("evt_1", None, None)


def test_identify_names_the_event_without_calling_stripe(fake_stripe, provider):
    result = provider.checkout_create(checkout_request(), idempotency_key="k")
    fake_stripe.complete_session(result.checkout_id)
    event = fake_stripe.event("checkout.session.completed", result.checkout_id)
    calls = len(fake_stripe.requests)

    identified = provider.webhook_identify(event)

    assert identified == (event["id"], "checkout.session.completed")
    assert len(fake_stripe.requests) == calls


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "payment_intent.succeeded"},
        {"id": "evt_1", "type": "payment_intent.succeeded"},
        {"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": ["x"]}},
        {
            "id": "evt_1",
            "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_1", "metadata": {"payment_id": "pay_1"}}},
        },
        {"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {"id": "cs_1"}}},
        {"id": "evt_1", "type": "refund.updated", "data": {"object": {"id": "re_1"}}},
        {"id": ["evt_1"], "type": "customer.created"},
    ],
    ids=[
        "no-id",
        "no-data",
        "object-not-an-object",
        "intent-without-status",
        "session-without-status",
        "refund-without-amount",
        "id-not-string",
    ],
)
@pytest.mark.parametrize("method", ["webhook_identify", "webhook_event"])
def test_malformed_events_are_refused(fake_stripe, provider, payload, method):
    with pytest.raises(WebhookVerificationError, match="Malformed"):
        getattr(provider, method)(payload)


# --- End to end: our API, the pay link, Stripe's webhook -----------------------------------


def create_stripe_payment(api, capture_callbacks, **body):
    """POST /api/v1/payments and run the checkout task the commit enqueues."""
    with capture_callbacks(execute=True):
        response = api.post(
            "/api/v1/payments",
            {"amount": "599.00", "currency": "RUB", "provider": "stripe", **body},
            format="json",
        )
    assert response.status_code == 201, response.content
    return Payment.objects.get(pk=response.json()["id"])


def deliver(client, capture_callbacks, event: dict, **sign):
    body, headers = signed(event, **sign)
    with capture_callbacks(execute=True):
        return client.post(WEBHOOK_URL, data=body, content_type="application/json", headers=headers)


def timeline(payment: Payment) -> list[tuple[str, str]]:
    return list(PaymentEvent.objects.filter(payment=payment).values_list("type", "source"))


@pytest.mark.django_db
def test_a_stripe_payment_from_api_call_to_signed_webhook(
    api, client, fake_stripe, django_capture_on_commit_callbacks
):
    payment = create_stripe_payment(api, django_capture_on_commit_callbacks)

    session = fake_stripe.sessions[payment.provider_checkout_id]
    assert payment.provider_checkout_url == session["url"]
    assert payment.provider_payment_id == ""
    sent = fake_stripe.requests_to("POST", "/v1/checkout/sessions")[0]
    assert sent.header("Idempotency-Key") == f"checkout-{payment.pk}"
    assert sent.form["client_reference_id"] == payment.pk
    pay_link = client.get(f"/pay/{payment.pk}")
    assert pay_link.status_code == 302
    assert pay_link["Location"] == session["url"]

    fake_stripe.complete_session(session["id"])
    event = fake_stripe.event("checkout.session.completed", session["id"])
    response = deliver(client, django_capture_on_commit_callbacks, event)

    assert response.status_code == 200, response.content
    assert response.json() == {"received": True, "duplicate": False}
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert payment.amount_captured == Decimal("599.00")
    assert payment.provider_payment_id == session["payment_intent"]
    assert (payment.card_brand, payment.card_last4) == ("visa", "4242")
    webhook = InboundWebhook.objects.get(provider="stripe", event_id=event["id"])
    assert (webhook.status, webhook.event_type) == ("processed", "checkout.session.completed")
    assert webhook.headers["stripe-signature"].startswith("t=")
    assert timeline(payment) == [
        ("created", "api"),
        ("checkout_created", "task"),
        ("succeeded", "provider"),
    ]
    body = api.get(f"/api/v1/payments/{payment.pk}").json()
    assert body["payment_method"] == {"type": "card", "brand": "visa", "last4": "4242"}

    # Stripe retries an event it thinks we missed: same id, fresh signature.
    again = deliver(client, django_capture_on_commit_callbacks, event)

    assert again.json() == {"received": True, "duplicate": True}
    assert InboundWebhook.objects.filter(provider="stripe").count() == 1
    assert PaymentEvent.objects.filter(payment=payment, type="succeeded").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sign",
    [{"secret": "whsec_forged"}, {"timestamp": int(time.time()) - 301}],
    ids=["bad-signature", "older-than-300s"],
)
def test_an_unverifiable_stripe_webhook_is_400_and_changes_nothing(
    api, client, fake_stripe, django_capture_on_commit_callbacks, sign
):
    payment = create_stripe_payment(api, django_capture_on_commit_callbacks)
    fake_stripe.complete_session(payment.provider_checkout_id)
    event = fake_stripe.event("checkout.session.completed", payment.provider_checkout_id)
    before = timeline(payment)

    response = deliver(client, django_capture_on_commit_callbacks, event, **sign)

    error = assert_error(response, 400, "parameter_invalid", "invalid_request_error")
    assert "signature" in error["message"].lower()
    assert InboundWebhook.objects.get().status == "rejected"
    payment.refresh_from_db()
    assert (payment.status, payment.card_last4, payment.provider_payment_id) == ("pending", "", "")
    assert timeline(payment) == before


@pytest.mark.django_db
def test_a_signed_but_malformed_stripe_event_is_400_and_stored_as_rejected(client, fake_stripe):
    event = {"id": "evt_malformed", "type": "payment_intent.succeeded", "data": {}}
    body, headers = signed(event)

    response = client.post(WEBHOOK_URL, data=body, content_type="application/json", headers=headers)

    error = assert_error(response, 400, "parameter_invalid", "invalid_request_error")
    assert "malformed" in error["message"].lower()
    assert InboundWebhook.objects.get().status == "rejected"


@pytest.mark.django_db
def test_a_declined_attempt_then_another_card_through_webhooks(
    api, client, fake_stripe, django_capture_on_commit_callbacks
):
    payment = create_stripe_payment(api, django_capture_on_commit_callbacks)
    intent = fake_stripe.fail_session_attempt(payment.provider_checkout_id)
    deliver(
        client,
        django_capture_on_commit_callbacks,
        fake_stripe.event("payment_intent.payment_failed", intent["id"]),
    )
    payment.refresh_from_db()
    assert (payment.status, payment.provider_payment_id) == ("pending", intent["id"])

    fake_stripe.complete_session(payment.provider_checkout_id)
    deliver(
        client,
        django_capture_on_commit_callbacks,
        fake_stripe.event("checkout.session.completed", payment.provider_checkout_id),
    )

    payment.refresh_from_db()
    assert payment.status == "succeeded"


@pytest.mark.django_db
def test_authorize_on_stripe_then_capture_through_our_api(
    api, client, fake_stripe, django_capture_on_commit_callbacks
):
    payment = create_stripe_payment(api, django_capture_on_commit_callbacks, capture=False)
    fake_stripe.complete_session(payment.provider_checkout_id)
    deliver(
        client,
        django_capture_on_commit_callbacks,
        fake_stripe.event("checkout.session.completed", payment.provider_checkout_id),
    )
    payment.refresh_from_db()
    assert payment.status == "requires_capture"

    response = api.post(
        f"/api/v1/payments/{payment.pk}/capture", {"amount": "500.00"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["amount_captured"]) == (
        "succeeded",
        "500.00",
    )
    assert fake_stripe.intents[payment.provider_payment_id]["amount_received"] == 50000


@pytest.mark.django_db
def test_canceling_a_pending_stripe_payment_closes_its_checkout(
    api, fake_stripe, django_capture_on_commit_callbacks
):
    payment = create_stripe_payment(api, django_capture_on_commit_callbacks)

    response = api.post(f"/api/v1/payments/{payment.pk}/cancel", {}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "canceled"
    assert fake_stripe.sessions[payment.provider_checkout_id]["status"] == "expired"


@pytest.mark.django_db
def test_config_offers_stripe_with_its_publishable_key(publishable_api, fake_stripe):
    body = publishable_api.get("/api/v1/config").json()

    assert "stripe" in body["providers"]
    assert body["stripe_publishable_key"] == PUBLISHABLE_KEY
