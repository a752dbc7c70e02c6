"""
The YooKassa adapter, through the real `yookassa` SDK, against a local fake of YooKassa's
API (`fakes/yookassa_server.py`) that records what it receives; and YooKassa notifications
through `/webhooks/yookassa`, where only the allowlisted source and the re-fetched object
count.
"""

import base64
import json
import threading
import time
from decimal import Decimal

import pytest

from payments import services as payment_services
from payments.models import Payment, PaymentEvent
from payments.providers.base import (
    CheckoutRequest,
    ProviderDeclined,
    ProviderTransientError,
    Receipt,
    ReceiptItem,
    SavedMethodCharge,
)
from payments.providers.yookassa import YooKassaProvider
from payments.tests.factories import CustomerFactory
from payments.tests.fakes.yookassa_server import FakeYooKassa
from webhooks import services as webhook_services
from webhooks.models import InboundWebhook

pytestmark = pytest.mark.django_db

TIMEOUT = 1
WEBHOOK_URL = "/webhooks/yookassa"
YOOKASSA_IP = "185.71.76.10"  # inside YooKassa's published 185.71.76.0/27


@pytest.fixture
def fake():
    with FakeYooKassa() as server:
        yield server


@pytest.fixture
def yookassa(fake, settings):
    settings.YOOKASSA_SHOP_ID = fake.shop_id
    settings.YOOKASSA_SECRET_KEY = fake.secret_key
    settings.YOOKASSA_API_URL = fake.api_url
    settings.PROVIDER_TIMEOUT_SECONDS = TIMEOUT
    return YooKassaProvider()


def checkout_request(**changes) -> CheckoutRequest:
    fields = {
        "payment_id": "pay_01TESTYOOKASSA",
        "amount": Decimal("599.00"),
        "currency": "RUB",
        "capture": True,
        "return_url": "http://testserver/pay/pay_01TESTYOOKASSA?returned=1",
        "description": "Premium plan",
        "metadata": {"payment_id": "pay_01TESTYOOKASSA"},
    }
    return CheckoutRequest(**{**fields, **changes})


def opened(yookassa, **changes) -> str:
    """A YooKassa payment waiting for the buyer; returns its id."""
    return yookassa.checkout_create(
        checkout_request(**changes), idempotency_key=f"checkout-{time.monotonic_ns()}"
    ).provider_payment_id


def only(requests):
    assert len(requests) == 1, requests
    return requests[0]


# --- Creating a payment: the wire format ---------------------------------------------------


def test_checkout_create_sends_the_documented_request(yookassa, fake):
    result = yookassa.checkout_create(checkout_request(), idempotency_key="checkout-pay_01")

    sent = only(fake.requests_to("POST", "/v3/payments"))
    credentials = base64.b64encode(f"{fake.shop_id}:{fake.secret_key}".encode()).decode()
    assert sent.header("Authorization") == f"Basic {credentials}"
    assert sent.header("Idempotence-Key") == "checkout-pay_01"
    assert sent.header("Content-Type") == "application/json"
    assert sent.json == {
        "amount": {"value": "599.00", "currency": "RUB"},
        "capture": True,
        "confirmation": {
            "type": "redirect",
            "return_url": "http://testserver/pay/pay_01TESTYOOKASSA?returned=1",
        },
        "description": "Premium plan",
        "save_payment_method": False,
        "metadata": {"payment_id": "pay_01TESTYOOKASSA", "requested_amount": "599.00"},
    }
    remote = fake.payment(result.provider_payment_id)
    assert result.checkout_id == result.provider_payment_id
    assert result.checkout_url == remote["confirmation"]["confirmation_url"]


def test_a_two_stage_payment_asks_for_no_capture_and_a_long_description_is_cut(yookassa, fake):
    yookassa.checkout_create(
        checkout_request(capture=False, description="x" * 300, save_payment_method=True),
        idempotency_key="checkout-2",
    )

    sent = only(fake.requests_to("POST", "/v3/payments")).json
    assert sent["capture"] is False
    assert sent["save_payment_method"] is True
    assert sent["description"] == "x" * 128


def test_a_retry_with_the_same_key_gets_the_same_payment(yookassa, fake):
    first = yookassa.checkout_create(checkout_request(), idempotency_key="checkout-same")
    again = yookassa.checkout_create(checkout_request(), idempotency_key="checkout-same")

    assert again == first
    assert len(fake.payments) == 1
    keys = [r.header("Idempotence-Key") for r in fake.requests_to("POST", "/v3/payments")]
    assert keys == ["checkout-same", "checkout-same"]


# --- Receipts (54-FZ) -----------------------------------------------------------------------


def _yookassa_payment(merchant, **fields) -> Payment:
    """A payment whose checkout task has run: it is waiting for the buyer at YooKassa."""
    payment = payment_services.payment_create(
        merchant=merchant, amount="599.00", currency="RUB", provider="yookassa", **fields
    )
    payment = payment_services.payment_checkout_start(payment_id=payment.pk)
    assert payment.provider_payment_id and payment.provider_checkout_url
    return payment


def test_no_receipt_is_sent_unless_the_merchant_enables_receipts(yookassa, fake, merchant):
    customer = CustomerFactory(merchant=merchant, email="buyer@example.com")

    _yookassa_payment(merchant, customer=customer)

    assert "receipt" not in only(fake.requests_to("POST", "/v3/payments")).json


def test_a_merchant_with_receipts_sends_one_with_every_payment(yookassa, fake, merchant):
    merchant.receipts_enabled = True
    merchant.receipt_vat_code = 4
    merchant.receipt_payment_subject = "commodity"
    merchant.receipt_payment_mode = "full_prepayment"
    merchant.receipt_tax_system_code = 2
    merchant.save()
    customer = CustomerFactory(merchant=merchant, email="buyer@example.com")

    payment = _yookassa_payment(merchant, customer=customer, description="Premium plan")

    assert only(fake.requests_to("POST", "/v3/payments")).json["receipt"] == {
        "customer": {"email": "buyer@example.com"},
        "items": [
            {
                "description": "Premium plan",
                "quantity": "1.00",
                "amount": {"value": "599.00", "currency": "RUB"},
                "vat_code": 4,
                "payment_subject": "commodity",
                "payment_mode": "full_prepayment",
            }
        ],
        "tax_system_code": 2,
    }
    assert fake.payment(payment.provider_payment_id)["receipt_registration"] == "pending"


def test_a_receipt_can_go_to_a_phone_and_counts_fractional_quantities(yookassa, fake):
    item = ReceiptItem(
        description="Coffee beans, kg",
        quantity=Decimal("0.5"),
        amount=Decimal("1198.00"),
        vat_code=3,
        payment_subject="commodity",
        payment_mode="full_payment",
    )
    receipt = Receipt(items=(item,), customer_phone="79001234567")

    yookassa.checkout_create(checkout_request(receipt=receipt), idempotency_key="checkout-r")

    sent = only(fake.requests_to("POST", "/v3/payments")).json["receipt"]
    assert sent["customer"] == {"phone": "79001234567"}
    assert sent["items"][0]["quantity"] == "0.50"
    assert "tax_system_code" not in sent


def test_a_receipt_with_nowhere_to_send_it_is_refused_before_calling_yookassa(yookassa, fake):
    item = ReceiptItem("Premium", Decimal(1), Decimal("599.00"), 1, "service", "full_payment")

    with pytest.raises(ProviderDeclined) as refused:
        yookassa.checkout_create(
            checkout_request(receipt=Receipt(items=(item,))), idempotency_key="checkout-r"
        )

    assert refused.value.code == "receipt_customer_missing"
    assert fake.requests == []


# --- Reading, capturing, canceling, refunding ----------------------------------------------


def test_a_paid_payment_is_read_with_only_brand_and_last4_of_the_card(yookassa, fake):
    payment_id = opened(yookassa, save_payment_method=True)
    paid = fake.pay(payment_id)

    remote = yookassa.payment_retrieve(payment_id)

    sent = fake.requests_to("GET", f"/v3/payments/{payment_id}")[0]
    assert sent.header("Authorization").startswith("Basic ")
    assert remote.provider_payment_id == payment_id
    assert remote.reference == "pay_01TESTYOOKASSA"
    assert remote.status == "succeeded"
    assert (remote.amount, remote.currency) == (Decimal("599.00"), "RUB")
    assert remote.amount_captured == Decimal("599.00")
    assert remote.payment_method_id == paid["payment_method"]["id"]
    assert remote.payment_method_types == ("card",)
    assert (remote.card_brand, remote.card_last4) == ("visa", "4444")
    assert paid["payment_method"]["card"]["first6"] not in repr(remote)


def test_an_unsaved_method_is_not_offered_for_later_charges(yookassa, fake):
    payment_id = opened(yookassa)
    fake.pay(payment_id)

    assert yookassa.payment_retrieve(payment_id).payment_method_id == ""


def test_a_waiting_payment_is_pending(yookassa):
    remote = yookassa.payment_retrieve(opened(yookassa))

    assert (remote.status, remote.amount_captured) == ("pending", Decimal(0))


def test_hold_then_partial_capture(yookassa, fake):
    payment_id = opened(yookassa, capture=False)
    fake.pay(payment_id)
    assert yookassa.payment_retrieve(payment_id).status == "requires_capture"

    captured = yookassa.payment_capture(
        payment_id, Decimal("500.00"), idempotency_key="capture-pay_01"
    )

    sent = only(fake.requests_to("POST", f"/v3/payments/{payment_id}/capture"))
    assert sent.header("Idempotence-Key") == "capture-pay_01"
    assert sent.json == {"amount": {"value": "500.00", "currency": "RUB"}}
    assert captured.status == "succeeded"
    assert captured.amount_captured == Decimal("500.00")
    # YooKassa now reports 500.00 as the payment's amount; ours stays what was authorized,
    # so a later notification still matches our payment.
    assert fake.payment(payment_id)["amount"]["value"] == "500.00"
    assert yookassa.payment_retrieve(payment_id).amount == Decimal("599.00")


def test_a_held_payment_can_be_released(yookassa, fake):
    payment_id = opened(yookassa, capture=False)
    fake.pay(payment_id)

    canceled = yookassa.payment_cancel(payment_id, idempotency_key="cancel-pay_01")

    sent = only(fake.requests_to("POST", f"/v3/payments/{payment_id}/cancel"))
    assert sent.header("Idempotence-Key") == "cancel-pay_01"
    assert sent.json is None
    assert (canceled.status, canceled.failure_code) == ("canceled", "canceled_by_merchant")


def test_a_payment_still_waiting_for_the_buyer_cannot_be_canceled_at_yookassa(yookassa):
    payment_id = opened(yookassa)

    with pytest.raises(ProviderDeclined) as refused:
        yookassa.payment_cancel(payment_id, idempotency_key="cancel-pay_01")

    assert refused.value.code == "invalid_request"


def test_refund_round_trip(yookassa, fake):
    payment_id = opened(yookassa)
    fake.pay(payment_id)

    refund = yookassa.refund_create(
        payment_id,
        Decimal("100.00"),
        "RUB",
        idempotency_key="refund-re_01",
        reason="Returned by the customer",
    )

    sent = only(fake.requests_to("POST", "/v3/refunds"))
    assert sent.header("Idempotence-Key") == "refund-re_01"
    assert sent.json == {
        "payment_id": payment_id,
        "amount": {"value": "100.00", "currency": "RUB"},
        "description": "Returned by the customer",
    }
    assert refund.provider_payment_id == payment_id
    assert (refund.status, refund.amount, refund.currency) == (
        "succeeded",
        Decimal("100.00"),
        "RUB",
    )
    assert refund.provider_refund_id in fake.refunds
    assert yookassa.payment_retrieve(payment_id).amount_refunded == Decimal("100.00")


@pytest.mark.parametrize(
    "reason, capture, status",
    [
        # The buyer's bank or YooKassa said no, or the buyer never finished: a failure.
        ("insufficient_funds", True, "failed"),
        ("3d_secure_failed", True, "failed"),
        ("fraud_suspected", True, "failed"),
        ("expired_on_confirmation", True, "failed"),
        # The merchant's side ended it (a hold nobody captured): canceled.
        ("expired_on_capture", False, "canceled"),
    ],
)
def test_a_canceled_payment_is_a_failure_unless_the_merchant_ended_it(
    yookassa, fake, reason, capture, status
):
    payment_id = opened(yookassa, capture=capture)
    if not capture:
        fake.pay(payment_id)
    fake.cancel_with(payment_id, reason)

    remote = yookassa.payment_retrieve(payment_id)

    assert (remote.status, remote.failure_code) == (status, reason)
    assert remote.failure_message


# --- Charging a saved method off-session ----------------------------------------------------


def saved_charge(method_id: str) -> SavedMethodCharge:
    return SavedMethodCharge(
        payment_id="pay_01RENEWAL",
        amount=Decimal("599.00"),
        currency="RUB",
        payment_method_id=method_id,
        description="Renewal",
    )


def test_an_off_session_charge_succeeds_at_once(yookassa, fake):
    method_id = fake.saved_method()

    remote = yookassa.charge_saved_method(saved_charge(method_id), idempotency_key="charge-1")

    sent = only(fake.requests_to("POST", "/v3/payments"))
    assert sent.header("Idempotence-Key") == "charge-1"
    assert sent.json == {
        "amount": {"value": "599.00", "currency": "RUB"},
        "capture": True,
        "payment_method_id": method_id,
        "description": "Renewal",
        "metadata": {"payment_id": "pay_01RENEWAL", "requested_amount": "599.00"},
    }
    assert (remote.status, remote.reference) == ("succeeded", "pay_01RENEWAL")
    assert (remote.amount_captured, remote.card_last4) == (Decimal("599.00"), "4444")


@pytest.mark.parametrize("reason", ["insufficient_funds", "card_expired", "permission_revoked"])
def test_an_off_session_decline_is_returned_as_failed_with_the_reason(yookassa, fake, reason):
    method_id = fake.saved_method()
    fake.decline_saved_method(method_id, reason)

    remote = yookassa.charge_saved_method(saved_charge(method_id), idempotency_key="charge-1")

    assert (remote.status, remote.failure_code) == ("failed", reason)


# --- Errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, code, error",
    [
        (400, "invalid_request", ProviderDeclined),
        (403, "forbidden", ProviderDeclined),
        (404, "not_found", ProviderDeclined),
        (429, "too_many_requests", ProviderTransientError),
        (500, "internal_server_error", ProviderTransientError),
    ],
)
def test_error_answers_map_to_our_errors_with_yookassas_code(yookassa, fake, status, code, error):
    fake.queue_error(status, description="Something about it.", parameter="amount")

    with pytest.raises(error) as raised:
        yookassa.checkout_create(checkout_request(), idempotency_key="checkout-e")

    assert type(raised.value) is error
    assert raised.value.code == code
    assert "Something about it." in raised.value.message


def test_wrong_credentials_are_retried_not_blamed_on_the_payment(yookassa, fake, settings, caplog):
    settings.YOOKASSA_SECRET_KEY = "test_not-the-key"

    with pytest.raises(ProviderTransientError) as refused:
        yookassa.payment_retrieve("2d3b4e5f-000f-5000-9000-1a2b3c4d5e6f")

    assert type(refused.value) is ProviderTransientError
    assert refused.value.code == "provider_authentication_failed"
    assert "credentials" in caplog.text


@pytest.mark.parametrize(
    "status, body, code",
    [
        # Statuses the SDK has no exception class for; the body decides.
        (503, {"type": "error", "code": "internal_server_error"}, "internal_server_error"),
        (409, {"type": "error", "code": "invalid_request"}, "invalid_request"),
        # A proxy's page instead of YooKassa's JSON.
        (502, "<html>Bad Gateway</html>", "provider_bad_response"),
        # A 200 that is not a payment.
        (200, {"unexpected": True}, "provider_bad_response"),
    ],
)
def test_unusual_answers_never_escape_as_sdk_errors(yookassa, fake, status, body, code):
    fake.queue_response(status, body)

    with pytest.raises((ProviderDeclined, ProviderTransientError)) as raised:
        yookassa.payment_retrieve("2d3b4e5f-000f-5000-9000-1a2b3c4d5e6f")

    assert raised.value.code == code
    assert raised.value.transient is (code != "invalid_request")


def test_a_202_is_asked_again_with_the_same_key(yookassa, fake):
    fake.queue_response(202, {"type": "processing", "id": "x", "retry_after": 1})

    result = yookassa.checkout_create(checkout_request(), idempotency_key="checkout-202")

    sent = fake.requests_to("POST", "/v3/payments")
    assert [r.header("Idempotence-Key") for r in sent] == ["checkout-202"] * 2
    assert result.provider_payment_id in fake.payments


def test_a_202_that_never_ends_is_transient_and_bounded(yookassa, fake):
    for _ in range(5):
        fake.queue_response(202, {"type": "processing", "id": "x", "retry_after": 1})

    started = time.monotonic()
    with pytest.raises(ProviderTransientError):
        yookassa.checkout_create(checkout_request(), idempotency_key="checkout-202")

    assert time.monotonic() - started < 2 * TIMEOUT + 1
    assert len(fake.requests_to("POST", "/v3/payments")) == 4  # the first and 3 repeats


@pytest.mark.parametrize("call", ["retrieve", "create"])
def test_a_silent_yookassa_is_a_transient_error_after_the_timeout(yookassa, fake, call):
    fake.delay_seconds = 10 * TIMEOUT

    started = time.monotonic()
    with pytest.raises(ProviderTransientError) as raised:
        if call == "retrieve":
            yookassa.payment_retrieve("2d3b4e5f-000f-5000-9000-1a2b3c4d5e6f")
        else:
            yookassa.checkout_create(checkout_request(), idempotency_key="checkout-slow")
    elapsed = time.monotonic() - started

    assert raised.value.code == "provider_timeout"
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 1.5
    # Not repeated: whether a POST that timed out took effect is unknown.
    assert len(fake.requests) == 1


def test_a_refused_connection_is_a_transient_error(yookassa, fake, settings):
    settings.YOOKASSA_API_URL = "http://127.0.0.1:9/v3"

    with pytest.raises(ProviderTransientError) as raised:
        yookassa.checkout_create(checkout_request(), idempotency_key="checkout-refused")

    assert raised.value.code == "provider_unreachable"
    assert fake.requests == []


def test_missing_credentials_are_a_transient_error(yookassa, settings):
    settings.YOOKASSA_SHOP_ID = ""

    with pytest.raises(ProviderTransientError) as raised:
        yookassa.payment_retrieve("2d3b4e5f-000f-5000-9000-1a2b3c4d5e6f")

    assert raised.value.code == "provider_not_configured"


def test_concurrent_calls_share_the_sdks_global_configuration_safely(yookassa, fake):
    payment_ids = [opened(yookassa) for _ in range(8)]
    results, errors = {}, []
    barrier = threading.Barrier(len(payment_ids))

    def read(payment_id):
        try:
            barrier.wait()
            results[payment_id] = yookassa.payment_retrieve(payment_id)
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(pid,)) for pid in payment_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert {pid: r.provider_payment_id for pid, r in results.items()} == {
        pid: pid for pid in payment_ids
    }


# --- Notifications through /webhooks/yookassa ---------------------------------------------


def notification(event: str, obj: dict) -> dict:
    return {"type": "notification", "event": event, "object": obj}


def post(client, payload, **meta):
    return client.post(
        WEBHOOK_URL, data=json.dumps(payload), content_type="application/json", **meta
    )


def deliver(client, capture_callbacks, payload, **meta):
    """Post a notification and run the processing it enqueued on commit."""
    with capture_callbacks(execute=True):
        return post(client, payload, **meta)


def posted_succeeded(fake, payment: Payment) -> dict:
    """What a notification saying `payment.succeeded` would carry."""
    body = fake.payment(payment.provider_payment_id)
    body.update(status="succeeded", paid=True)
    return notification("payment.succeeded", body)


def test_a_notification_from_outside_the_allowlist_is_rejected_and_changes_nothing(
    yookassa, fake, client, merchant, django_capture_on_commit_callbacks
):
    payment = _yookassa_payment(merchant)
    fake.pay(payment.provider_payment_id)
    payload = posted_succeeded(fake, payment)

    response = deliver(
        client, django_capture_on_commit_callbacks, payload, REMOTE_ADDR="203.0.113.5"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parameter_invalid"
    payment.refresh_from_db()
    assert payment.status == "pending"
    webhook = InboundWebhook.objects.get()
    assert (webhook.status, webhook.source_ip) == ("rejected", "203.0.113.5")
    assert "not a YooKassa notification address" in webhook.error
    assert not fake.requests_to("GET", f"/v3/payments/{payment.provider_payment_id}")


def test_an_allowed_notification_moves_the_payment_as_the_api_reports_it(
    yookassa, fake, client, merchant, django_capture_on_commit_callbacks
):
    payment = _yookassa_payment(merchant)
    fake.pay(payment.provider_payment_id)

    response = deliver(
        client,
        django_capture_on_commit_callbacks,
        posted_succeeded(fake, payment),
        REMOTE_ADDR=YOOKASSA_IP,
    )

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert payment.amount_captured == Decimal("599.00")
    assert (payment.card_brand, payment.card_last4) == ("visa", "4444")
    webhook = InboundWebhook.objects.get()
    assert webhook.status == "processed"
    assert webhook.event_id == f"payment.succeeded:{payment.provider_payment_id}"
    assert webhook.source_ip == YOOKASSA_IP
    assert fake.requests_to("GET", f"/v3/payments/{payment.provider_payment_id}")
    succeeded = PaymentEvent.objects.get(payment=payment, type="succeeded")
    assert succeeded.source == "provider"
    assert succeeded.actor == f"yookassa:payment.succeeded:{payment.provider_payment_id}"


def test_the_posted_body_is_not_believed_over_the_api(
    yookassa, fake, client, merchant, django_capture_on_commit_callbacks
):
    payment = _yookassa_payment(merchant)  # the buyer has not paid: the API says pending

    response = deliver(
        client,
        django_capture_on_commit_callbacks,
        posted_succeeded(fake, payment),
        REMOTE_ADDR=YOOKASSA_IP,
    )

    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.status == "pending"
    assert payment.amount_captured == Decimal(0)
    assert InboundWebhook.objects.get().status == "processed"
    assert fake.payment(payment.provider_payment_id)["status"] == "pending"


def test_a_repeated_notification_is_processed_once(
    yookassa, fake, client, merchant, django_capture_on_commit_callbacks
):
    payment = _yookassa_payment(merchant)
    fake.pay(payment.provider_payment_id)
    payload = posted_succeeded(fake, payment)

    first = deliver(client, django_capture_on_commit_callbacks, payload, REMOTE_ADDR=YOOKASSA_IP)
    again = deliver(client, django_capture_on_commit_callbacks, payload, REMOTE_ADDR=YOOKASSA_IP)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == {"received": True, "duplicate": True}
    assert InboundWebhook.objects.count() == 1
    assert PaymentEvent.objects.filter(payment=payment, type="succeeded").count() == 1


def test_behind_a_trusted_proxy_the_forwarded_yookassa_address_is_accepted(
    yookassa, fake, client, merchant, settings, django_capture_on_commit_callbacks
):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    payment = _yookassa_payment(merchant)
    fake.pay(payment.provider_payment_id)

    response = deliver(
        client,
        django_capture_on_commit_callbacks,
        posted_succeeded(fake, payment),
        REMOTE_ADDR="10.1.2.3",
        # The left entry is whatever the sender claimed; our proxy appended the real one.
        HTTP_X_FORWARDED_FOR=f"203.0.113.9, {YOOKASSA_IP}",
    )

    assert response.status_code == 200
    assert InboundWebhook.objects.get().source_ip == YOOKASSA_IP
    payment.refresh_from_db()
    assert payment.status == "succeeded"


@pytest.mark.parametrize("trusted", [[], ["10.0.0.0/8"]])
def test_a_forwarded_for_header_from_an_untrusted_client_proves_nothing(
    yookassa, fake, client, merchant, settings, trusted, django_capture_on_commit_callbacks
):
    settings.TRUSTED_PROXIES = trusted
    payment = _yookassa_payment(merchant)
    fake.pay(payment.provider_payment_id)

    response = deliver(
        client,
        django_capture_on_commit_callbacks,
        posted_succeeded(fake, payment),
        REMOTE_ADDR="203.0.113.5",
        HTTP_X_FORWARDED_FOR=YOOKASSA_IP,
    )

    assert response.status_code == 400
    assert InboundWebhook.objects.get().status == "rejected"
    payment.refresh_from_db()
    assert payment.status == "pending"


def test_a_declined_payment_notification_fails_the_payment_with_the_reason(
    yookassa, fake, client, merchant, django_capture_on_commit_callbacks
):
    payment = _yookassa_payment(merchant)
    canceled = fake.cancel_with(payment.provider_payment_id, "insufficient_funds")

    response = deliver(
        client,
        django_capture_on_commit_callbacks,
        notification("payment.canceled", canceled),
        REMOTE_ADDR=YOOKASSA_IP,
    )

    assert response.status_code == 200
    payment.refresh_from_db()
    assert (payment.status, payment.failure_code) == ("failed", "insufficient_funds")
    assert payment.failure_message == "Insufficient funds."


def test_a_held_payment_notification_makes_it_capturable(
    yookassa, fake, client, merchant, django_capture_on_commit_callbacks
):
    payment = _yookassa_payment(merchant, capture=False)
    held = fake.pay(payment.provider_payment_id)

    deliver(
        client,
        django_capture_on_commit_callbacks,
        notification("payment.waiting_for_capture", held),
        REMOTE_ADDR=YOOKASSA_IP,
    )

    payment.refresh_from_db()
    assert payment.status == "requires_capture"


def test_a_partial_capture_then_its_notification_agree(
    yookassa, fake, client, merchant, django_capture_on_commit_callbacks
):
    payment = _yookassa_payment(merchant, capture=False)
    fake.pay(payment.provider_payment_id)
    deliver(
        client,
        django_capture_on_commit_callbacks,
        notification("payment.waiting_for_capture", fake.payment(payment.provider_payment_id)),
        REMOTE_ADDR=YOOKASSA_IP,
    )
    payment.refresh_from_db()
    payment_services.payment_capture(payment=payment, amount=Decimal("500.00"), source="api")

    deliver(
        client,
        django_capture_on_commit_callbacks,
        notification("payment.succeeded", fake.payment(payment.provider_payment_id)),
        REMOTE_ADDR=YOOKASSA_IP,
    )

    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == ("succeeded", Decimal("500.00"))
    assert set(InboundWebhook.objects.values_list("status", flat=True)) == {"processed"}


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "notification", "event": "payment.succeeded", "object": {}},
        {"type": "notification", "event": "payment.succeeded", "object": {"id": "../refunds/x"}},
        {"type": "notification", "object": {"id": "2d3b4e5f-000f-5000-9000-1a2b3c4d5e6f"}},
        {"type": "other", "event": "payment.succeeded", "object": {"id": "2d3b4e5f"}},
        ["not", "an", "object"],
    ],
)
def test_a_malformed_notification_from_an_allowed_address_is_rejected(
    yookassa, fake, client, payload
):
    response = post(client, payload, REMOTE_ADDR=YOOKASSA_IP)

    assert response.status_code == 400
    assert InboundWebhook.objects.get().status == "rejected"
    assert fake.requests == []


def test_a_notification_about_an_object_yookassa_does_not_know_is_kept_as_failed(
    yookassa, fake, client, django_capture_on_commit_callbacks
):
    """Stored and answered first (no API call in the request); the re-fetch then fails."""
    payload = notification(
        "payment.succeeded", {"id": "2d3b4e5f-000f-5000-9000-1a2b3c4d5e6f", "status": "succeeded"}
    )

    response = deliver(client, django_capture_on_commit_callbacks, payload, REMOTE_ADDR=YOOKASSA_IP)

    assert response.status_code == 200
    webhook = InboundWebhook.objects.get()
    assert webhook.status == "failed"
    assert "2d3b4e5f" in webhook.error
    assert fake.requests_to("POST", "/v3/payments") == []


def test_a_refund_notification_is_fetched_and_left_for_the_refunds_work(
    yookassa, fake, client, merchant, django_capture_on_commit_callbacks
):
    payment = _yookassa_payment(merchant)
    fake.pay(payment.provider_payment_id)
    refund = yookassa.refund_create(
        payment.provider_payment_id, Decimal("100.00"), "RUB", idempotency_key="refund-1"
    )

    response = deliver(
        client,
        django_capture_on_commit_callbacks,
        notification("refund.succeeded", fake.refunds[refund.provider_refund_id]),
        REMOTE_ADDR=YOOKASSA_IP,
    )

    assert response.status_code == 200
    assert fake.requests_to("GET", f"/v3/refunds/{refund.provider_refund_id}")
    event = YooKassaProvider().webhook_event(InboundWebhook.objects.get().payload)
    assert event.payment is None
    assert (event.refund.status, event.refund.amount) == ("succeeded", Decimal("100.00"))
    assert InboundWebhook.objects.get().status == "ignored"


def test_an_outage_while_processing_keeps_the_notification_failed_for_a_retry(
    yookassa, fake, merchant
):
    payment = _yookassa_payment(merchant)
    fake.pay(payment.provider_payment_id)
    webhook = InboundWebhook.objects.create(
        provider="yookassa",
        event_id=f"payment.succeeded:{payment.provider_payment_id}",
        event_type="payment.succeeded",
        payload=posted_succeeded(fake, payment),
        source_ip=YOOKASSA_IP,
    )
    fake.queue_error(500)

    with pytest.raises(ProviderTransientError):
        webhook_services.webhook_process(webhook_id=webhook.pk)

    webhook.refresh_from_db()
    assert webhook.status == "failed"
    assert "ProviderTransientError" in webhook.error
    payment.refresh_from_db()
    assert payment.status == "pending"

    webhook_services.webhook_process(webhook_id=webhook.pk)  # the task's retry

    payment.refresh_from_db()
    assert payment.status == "succeeded"


# --- End to end through our API --------------------------------------------------------------


def test_a_yookassa_payment_through_the_api_sends_the_buyer_to_yookassa(
    yookassa, fake, api, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/payments",
            {"amount": "599.00", "currency": "RUB", "provider": "yookassa"},
            format="json",
        )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["provider"] == "yookassa"
    payment = Payment.objects.get(pk=body["id"])
    sent = only(fake.requests_to("POST", "/v3/payments"))
    assert sent.header("Idempotence-Key") == f"checkout-{payment.pk}"
    assert sent.json["metadata"]["payment_id"] == payment.pk
    remote = fake.payment(payment.provider_payment_id)
    assert payment.provider_checkout_url == remote["confirmation"]["confirmation_url"]

    pay_link = client.get(f"/pay/{payment.pk}")

    assert pay_link.status_code == 302
    assert pay_link["Location"] == remote["confirmation"]["confirmation_url"]


def test_receiving_a_notification_makes_no_api_call(yookassa, fake, client, merchant):
    payment = _yookassa_payment(merchant)
    fake.pay(payment.provider_payment_id)
    calls_before = len(fake.requests)

    response = post(client, posted_succeeded(fake, payment), REMOTE_ADDR=YOOKASSA_IP)

    assert response.status_code == 200
    assert len(fake.requests) == calls_before  # the re-fetch waits for the task
    assert InboundWebhook.objects.get().status == "received"


def test_receipts_need_a_customer_email_when_the_payment_is_created(yookassa, api, merchant):
    merchant.receipts_enabled = True
    merchant.save()

    response = api.post(
        "/api/v1/payments",
        {"amount": "599.00", "currency": "RUB", "provider": "yookassa"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "customer"
    assert not Payment.objects.exists()
