from decimal import Decimal

import pytest

from conftest import task_sends
from payments.models import Payment, PaymentEvent
from payments.tests.factories import CustomerFactory, PaymentFactory
from payments.tests.test_authentication import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/v1/payments"


def create(api, **body):
    payload = {"amount": "599.00", "currency": "RUB", **body}
    return api.post(URL, payload, format="json")


def test_create_returns_201_at_once_with_a_pay_link(
    api, merchant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = create(api, description="Premium", order_id="o-1", metadata={"k": "v"})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("pay_")
    assert body["object"] == "payment"
    assert body["status"] == "pending"
    assert body["amount"] == "599.00"
    assert body["currency"] == "RUB"
    assert body["provider"] == "sandbox"
    assert body["checkout_url"] == f"http://testserver/pay/{body['id']}"
    assert body["created_at"].endswith("Z")
    # The provider call waits for the commit, in a task.
    assert len(task_sends(callbacks)) == 1
    payment = Payment.objects.get(pk=body["id"])
    assert payment.merchant == merchant and payment.amount == Decimal("599.00")
    assert payment.provider_checkout_url == ""


@pytest.mark.parametrize(
    "amount, currency, formatted",
    [
        ("100", "JPY", "100"),
        ("1.500", "KWD", "1.500"),
        ("599", "rub", "599.00"),
        ("0.01", "USD", "0.01"),
    ],
)
def test_amounts_follow_the_currency_exponent(api, amount, currency, formatted):
    body = create(api, amount=amount, currency=currency).json()

    assert body["amount"] == formatted
    assert body["currency"] == currency.upper()


@pytest.mark.parametrize(
    "amount, currency",
    [
        ("599.001", "RUB"),
        ("1.5", "JPY"),
        ("0", "RUB"),
        ("0.00", "RUB"),
        ("-5", "RUB"),
        ("abc", "RUB"),
        ("", "RUB"),
        ("1e3", "RUB"),
        ("1000000000000", "RUB"),
        (1.5, "RUB"),
        (599, "RUB"),
        (None, "RUB"),
    ],
)
def test_bad_amounts_are_400_naming_amount_and_create_nothing(api, amount, currency):
    response = create(api, amount=amount, currency=currency)

    error = assert_error(response, 400, response.json()["error"]["code"], "invalid_request_error")
    assert error["param"] == "amount"
    assert not Payment.objects.exists()


@pytest.mark.parametrize("currency", ["XYZ", "RU", "rubles", "R1B"])
def test_bad_currency_is_400(api, currency):
    error = assert_error(
        create(api, currency=currency), 400, "parameter_invalid", "invalid_request_error"
    )
    assert error["param"] == "currency"


def test_missing_amount_is_parameter_missing(api):
    error = assert_error(
        api.post(URL, {"currency": "RUB"}, format="json"),
        400,
        "parameter_missing",
        "invalid_request_error",
    )
    assert error["param"] == "amount"


def test_a_disabled_provider_is_400(api, settings):
    error = assert_error(
        create(api, provider="stripe"), 400, "provider_not_enabled", "invalid_request_error"
    )
    assert error["param"] == "provider"
    error = assert_error(
        create(api, provider="paypal"), 400, "parameter_invalid", "invalid_request_error"
    )
    assert error["param"] == "provider"
    settings.SANDBOX_ENABLED = False
    assert_error(create(api), 400, "provider_not_enabled", "invalid_request_error")
    assert not Payment.objects.exists()


def test_customer_by_id_or_by_external_id(api, merchant):
    existing = CustomerFactory(merchant=merchant)

    by_id = create(api, customer=existing.id).json()
    new = create(api, customer={"external_id": "u-77", "email": "u77@example.com"}).json()
    again = create(api, customer={"external_id": "u-77"}).json()

    assert by_id["customer"] == existing.id
    assert new["customer"].startswith("cus_") and new["customer"] == again["customer"]
    assert merchant.customers.get(external_id="u-77").email == "u77@example.com"


def test_another_merchants_customer_cannot_be_charged(api, other_merchant):
    theirs = CustomerFactory(merchant=other_merchant)

    error = assert_error(
        create(api, customer=theirs.id), 400, "parameter_invalid", "invalid_request_error"
    )
    assert error["param"] == "customer"
    assert not Payment.objects.exists()


def test_one_open_or_paid_payment_per_order(api, merchant):
    first = create(api, order_id="order-1").json()

    error = assert_error(
        create(api, order_id="order-1"), 409, "order_payment_exists", "invalid_request_error"
    )
    assert error["param"] == "order_id"

    # Once the first attempt has failed, the buyer may try again.
    Payment.objects.filter(pk=first["id"]).update(status="failed")
    assert create(api, order_id="order-1").status_code == 201
    # Order ids are per merchant.
    assert Payment.objects.filter(order_id="order-1").count() == 2


def test_retrieve_and_cross_merchant_404(api, other_api):
    payment_id = create(api).json()["id"]

    assert api.get(f"{URL}/{payment_id}").json()["id"] == payment_id
    for path in ["", "/events", "/cancel", "/capture"]:
        method = other_api.get if path in ("", "/events") else other_api.post
        response = method(f"{URL}/{payment_id}{path}", {}, format="json")
        assert_error(response, 404, "resource_missing", "invalid_request_error")


def test_list_filters_and_pagination(api, merchant):
    customer = CustomerFactory(merchant=merchant)
    succeeded = PaymentFactory(merchant=merchant, status="succeeded", customer=customer)
    failed = PaymentFactory(merchant=merchant, status="failed", order_id="o-9")
    pending = [PaymentFactory(merchant=merchant).id for _ in range(3)]
    PaymentFactory()  # another merchant's

    def ids(query=""):
        return [p["id"] for p in api.get(f"{URL}?{query}").json()["results"]]

    assert ids() == [*reversed(pending), failed.id, succeeded.id]
    assert ids("status=succeeded") == [succeeded.id]
    assert ids("status=succeeded&status=failed") == [failed.id, succeeded.id]
    assert ids(f"customer={customer.id}") == [succeeded.id]
    assert ids("order_id=o-9") == [failed.id]
    assert ids("provider=stripe") == []
    first_page = api.get(f"{URL}?limit=2").json()
    assert len(first_page["results"]) == 2 and first_page["next"]
    second_page = api.get(first_page["next"]).json()
    assert [p["id"] for p in second_page["results"]] == [pending[0], failed.id]
    assert_error(api.get(f"{URL}?status=paid"), 400, "parameter_invalid", "invalid_request_error")


def test_timeline_lists_every_step_in_order(api):
    payment_id = create(api).json()["id"]
    api.post(f"{URL}/{payment_id}/cancel", {}, format="json")

    events = api.get(f"{URL}/{payment_id}/events").json()["results"]

    assert [(e["type"], e["from_status"], e["to_status"], e["source"]) for e in events] == [
        ("created", None, "pending", "api"),
        ("canceled", "pending", "canceled", "api"),
    ]
    assert events[0]["object"] == "payment_event"
    assert events[0]["actor"].startswith("key_")


def test_cancel_a_pending_payment(api):
    payment_id = create(api).json()["id"]

    response = api.post(f"{URL}/{payment_id}/cancel", {}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert response.json()["completed_at"]


@pytest.mark.parametrize("status", ["succeeded", "failed", "canceled", "refunded"])
def test_cancel_is_409_once_money_moved_or_the_payment_ended(api, merchant, status):
    payment = PaymentFactory(merchant=merchant, status=status)

    assert_error(
        api.post(f"{URL}/{payment.id}/cancel", {}, format="json"),
        409,
        "payment_invalid_state",
        "invalid_request_error",
    )
    payment.refresh_from_db()
    assert payment.status == status
    assert not PaymentEvent.objects.filter(payment=payment).exists()


def test_capture_is_409_unless_authorized(api, merchant):
    payment = PaymentFactory(merchant=merchant)

    assert_error(
        api.post(f"{URL}/{payment.id}/capture", {}, format="json"),
        409,
        "payment_invalid_state",
        "invalid_request_error",
    )


def test_unknown_fields_are_refused(api):
    error = assert_error(
        create(api, ammount="1.00"), 400, "parameter_unknown", "invalid_request_error"
    )
    assert error["param"] == "ammount"


def test_a_live_key_cannot_take_sandbox_payments(merchant):
    from conftest import client_for
    from payments.tests.factories import APIKeyFactory

    live = client_for(APIKeyFactory(merchant=merchant, livemode=True).raw_key)

    error = assert_error(create(live), 400, "provider_not_enabled", "invalid_request_error")
    assert error["param"] == "provider"
    assert "live" in error["message"]
    assert not Payment.objects.exists()


def test_a_test_key_cannot_move_real_money(api, settings):
    settings.STRIPE_SECRET_KEY = "sk_live_configured"

    error = assert_error(
        create(api, provider="stripe"), 400, "provider_not_enabled", "invalid_request_error"
    )
    assert "test" in error["message"]
    assert not Payment.objects.exists()


@pytest.mark.parametrize("bad_id", ["pay_%00", "%00"])
def test_ids_with_nul_are_404_not_500(api, client, bad_id):
    assert_error(api.get(f"{URL}/{bad_id}"), 404, "resource_missing", "invalid_request_error")
    assert_error(
        api.get(f"/api/v1/customers/{bad_id}"), 404, "resource_missing", "invalid_request_error"
    )
    assert client.get(f"/pay/{bad_id}").status_code == 404


def test_metadata_keys_with_nul_are_400(api):
    error = assert_error(
        create(api, metadata={"a\x00b": "v"}), 400, "parameter_invalid", "invalid_request_error"
    )
    assert error["param"] == "metadata"


def test_a_body_nested_too_deeply_is_400(api):
    body = '{"metadata": ' * 5000 + "{}" + "}" * 5000

    response = api.generic("POST", URL, body, content_type="application/json")

    assert_error(response, 400, "parse_error", "invalid_request_error")


def test_a_body_too_large_is_413(api):
    body = '{"description": "' + "x" * 3_000_000 + '"}'

    response = api.generic("POST", URL, body, content_type="application/json")

    assert_error(response, 413, "request_too_large", "invalid_request_error")
    assert not Payment.objects.exists()


def test_created_filters_before_1970_do_not_hide_payments(api, merchant):
    payment = PaymentFactory(merchant=merchant)

    results = api.get(f"{URL}?created_gte=1900-01-01T00:00:00Z").json()["results"]

    assert [p["id"] for p in results] == [payment.id]


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_for_one_order_make_one_payment(merchant):
    from conftest import client_for, run_concurrently
    from payments.tests.factories import APIKeyFactory

    raw_key = APIKeyFactory(merchant=merchant).raw_key

    statuses = run_concurrently(10, lambda: create(client_for(raw_key), order_id="o-1").status_code)

    assert sorted(statuses) == [201] + [409] * 9
    assert Payment.objects.filter(order_id="o-1").count() == 1


@pytest.mark.parametrize("amount", [5, 1.5, "1.001", "0"])
def test_bad_capture_amounts_are_400(api, merchant, amount):
    payment = PaymentFactory(merchant=merchant, status="requires_capture", capture=False)

    response = api.post(f"{URL}/{payment.id}/capture", {"amount": amount}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "amount"
