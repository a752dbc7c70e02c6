"""Prepaid credit balances, and paying with them (`"provider": "credits"`)."""

from decimal import Decimal

import pytest

from conftest import client_for, run_concurrently
from payments.models import CreditTransaction, CustomerBalance, Payment
from payments.tests.factories import APIKeyFactory, CustomerFactory
from payments.tests.test_authentication import assert_error

pytestmark = pytest.mark.django_db


def credit(api, customer_id, type="grant", amount="100.00", currency="RUB", **extra):
    return api.post(
        f"/api/v1/customers/{customer_id}/credits",
        {"type": type, "amount": amount, "currency": currency, **extra},
        format="json",
    )


def pay(api, customer_id, amount="60.00", **extra):
    return api.post(
        "/api/v1/payments",
        {
            "amount": amount,
            "currency": "RUB",
            "provider": "credits",
            "customer": customer_id,
            **extra,
        },
        format="json",
    )


@pytest.fixture
def customer(merchant):
    return CustomerFactory(merchant=merchant)


def test_grant_and_deduct_show_in_the_customer(api, customer):
    granted = credit(api, customer.id, amount="100.00", description="welcome bonus")
    credit(api, customer.id, type="deduct", amount="30.00")
    credit(api, customer.id, amount="5", currency="USD")

    assert granted.status_code == 201
    assert granted.json()["object"] == "credit_transaction"
    assert granted.json()["balance_after"] == "100.00"
    assert api.get(f"/api/v1/customers/{customer.id}").json()["balances"] == {
        "RUB": "70.00",
        "USD": "5.00",
    }
    listed = api.get(f"/api/v1/customers/{customer.id}/credits").json()["results"]
    assert [c["type"] for c in listed] == ["grant", "deduct", "grant"][::-1]


def test_deducting_more_than_the_balance_is_refused(api, customer):
    credit(api, customer.id, amount="10.00")

    error = assert_error(
        credit(api, customer.id, type="deduct", amount="10.01"),
        409,
        "insufficient_balance",
        "invalid_request_error",
    )
    assert error["param"] == "amount"
    assert CustomerBalance.objects.get(customer=customer).amount == Decimal("10.00")


@pytest.mark.parametrize(
    "body, param",
    [
        ({"type": "gift"}, "type"),
        ({"amount": "-5"}, "amount"),
        ({"amount": 5}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"currency": "XYZ"}, "currency"),
    ],
)
def test_bad_credit_requests_are_400(api, customer, body, param):
    response = credit(
        api, customer.id, **{"type": "grant", "amount": "1.00", "currency": "RUB", **body}
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not CreditTransaction.objects.exists()


def test_credit_grants_are_idempotent(api, customer):
    headers = {"Idempotency-Key": "bonus-1"}
    body = {"type": "grant", "amount": "50.00", "currency": "RUB"}
    url = f"/api/v1/customers/{customer.id}/credits"

    first = api.post(url, body, format="json", headers=headers)
    second = api.post(url, body, format="json", headers=headers)

    assert second.content == first.content
    assert CustomerBalance.objects.get(customer=customer).amount == Decimal("50.00")


def test_paying_with_credits_succeeds_at_once_and_debits_the_balance(api, customer):
    credit(api, customer.id, amount="100.00")

    response = pay(api, customer.id, amount="60.00")

    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"
    assert response.json()["amount_captured"] == "60.00"
    assert api.get(f"/api/v1/customers/{customer.id}").json()["balances"] == {"RUB": "40.00"}


def test_insufficient_balance_fails_and_changes_nothing(api, customer):
    credit(api, customer.id, amount="10.00")

    error = assert_error(
        pay(api, customer.id, amount="10.01"), 409, "insufficient_balance", "invalid_request_error"
    )

    assert "10.00" in error["message"]
    assert not Payment.objects.exists()
    assert CustomerBalance.objects.get(customer=customer).amount == Decimal("10.00")


def test_credits_need_a_customer(api):
    response = api.post(
        "/api/v1/payments",
        {"amount": "1.00", "currency": "RUB", "provider": "credits"},
        format="json",
    )

    assert_error(response, 400, "parameter_invalid", "invalid_request_error")


def test_refunding_a_credits_payment_returns_the_credit(api, customer):
    credit(api, customer.id, amount="100.00")
    payment = pay(api, customer.id, amount="60.00").json()

    partial = api.post(
        f"/api/v1/payments/{payment['id']}/refunds", {"amount": "20.00"}, format="json"
    )
    rest = api.post(f"/api/v1/payments/{payment['id']}/refunds", {}, format="json")

    assert partial.json()["status"] == rest.json()["status"] == "succeeded"
    assert api.get(f"/api/v1/payments/{payment['id']}").json()["status"] == "refunded"
    assert api.get(f"/api/v1/customers/{customer.id}").json()["balances"] == {"RUB": "100.00"}


def test_a_live_key_may_pay_with_credits(merchant, customer):
    live = client_for(APIKeyFactory(merchant=merchant, livemode=True).raw_key)
    credit(live, customer.id, amount="5.00")

    assert pay(live, customer.id, amount="5.00").json()["status"] == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_concurrent_spends_never_overdraw(merchant):
    customer = CustomerFactory(merchant=merchant)
    raw_key = APIKeyFactory(merchant=merchant).raw_key
    credit(client_for(raw_key), customer.id, amount="100.00")

    statuses = run_concurrently(
        10, lambda: pay(client_for(raw_key), customer.id, amount="30.00").status_code
    )

    assert sorted(statuses) == [201] * 3 + [409] * 7
    assert CustomerBalance.objects.get(customer=customer).amount == Decimal("10.00")
    assert Payment.objects.filter(status="succeeded").count() == 3


def test_test_mode_credit_cannot_pay_live_payments(api, merchant, customer):
    live = client_for(APIKeyFactory(merchant=merchant, livemode=True).raw_key)
    credit(api, customer.id, amount="1000.00")  # a test key grants

    error = assert_error(
        pay(live, customer.id, amount="10.00"), 409, "insufficient_balance", "invalid_request_error"
    )

    assert "0.00" in error["message"]
    assert live.get(f"/api/v1/customers/{customer.id}").json()["balances"] == {}
    assert api.get(f"/api/v1/customers/{customer.id}").json()["balances"] == {"RUB": "1000.00"}
    assert live.get(f"/api/v1/customers/{customer.id}/credits").json()["results"] == []


def test_credits_cannot_authorize_only(api, customer):
    credit(api, customer.id, amount="100.00")

    response = pay(api, customer.id, capture=False)

    assert response.status_code == 400 and response.json()["error"]["param"] == "capture"
    assert not Payment.objects.exists()
