"""
Card numbers are never accepted by the API, and never stored beyond their last four
digits anywhere, the sandbox included.
"""

import pytest
from django.db import connection

from payments.cards import card_numbers_masked, contains_card_number
from payments.models import Payment, SandboxPaymentMethod
from payments.tests.factories import APIKeyFactory
from payments.tests.test_sandbox_flow import Buyer, create_payment

CARD = "4242424242424242"


def _refused(response, param):
    assert response.status_code == 400, response.content
    assert response.json() == {
        "error": {
            "type": "invalid_request_error",
            "code": "card_number_refused",
            "message": response.json()["error"]["message"],
            "param": param,
        }
    }
    assert "checkout_url" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"description": f"card {CARD}"}, "description"),
        ({"description": "4000 0000 0000 0002 exp 12/30"}, "description"),
        ({"metadata": {"card": "4000-0025-0000-3155"}}, "metadata.card"),
        ({"metadata": {CARD: "x"}}, f"metadata.{CARD}"),
        ({"order_id": 4242424242424242}, "order_id"),
        (
            {"line_items": [{"name": "ok", "quantity": 1, "unit_amount": "599.00"},
                            {"name": f"ticket {CARD}", "quantity": 1, "unit_amount": "1.00"}]},
            "line_items[1].name",
        ),
        ({"customer": {"external_id": "c1", "name": f"{CARD[:8]} {CARD[8:]}"}}, "customer.name"),
    ],
)  # fmt: skip
def test_a_field_holding_a_card_number_is_refused_and_nothing_is_created(api, extra, param):
    response = api.post(
        "/api/v1/payments",
        {"amount": "599.00", "currency": "RUB", **extra},
        format="json",
        HTTP_IDEMPOTENCY_KEY="card-in-body",
    )

    _refused(response, param)
    assert not Payment.objects.exists()
    # The key was not spent on the refusal: the corrected request goes through.
    corrected = api.post(
        "/api/v1/payments",
        {"amount": "599.00", "currency": "RUB"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="card-in-body",
    )
    assert corrected.status_code == 201


def test_a_query_parameter_holding_a_card_number_is_refused(api):
    _refused(api.get(f"/api/v1/payments?search={CARD}"), "search")
    _refused(api.get("/api/v1/customers?email=4242+4242+4242+4242"), "email")


def test_a_body_that_is_not_json_is_refused_without_naming_a_field(api):
    response = api.generic("POST", "/api/v1/payments", f"number={CARD}", content_type="text/plain")
    _refused(response, None)


def test_digit_runs_that_are_not_card_numbers_pass(api):
    response = api.post(
        "/api/v1/payments",
        {
            "amount": "599.00",
            "currency": "RUB",
            "order_id": "4242424242424241",  # Luhn fails
            "description": "order 2026-12-02 phone 89161234567 total 1234567.00",
        },
        format="json",
    )
    assert response.status_code == 201, response.content


def test_the_check_is_the_one_the_logs_mask_with():
    assert contains_card_number(f"x {CARD} y")
    assert not contains_card_number(f"pay_{CARD}")
    assert card_numbers_masked(f"x {CARD} y") == "x •••• 4242 y"


@pytest.mark.django_db(transaction=True)
def test_no_table_holds_a_card_number_after_sandbox_payments(live_server, settings, merchant):
    settings.PUBLIC_BASE_URL = live_server.url
    from conftest import client_for

    api = client_for(APIKeyFactory(merchant=merchant).raw_key)
    paid = create_payment(api, customer={"external_id": "c-1", "email": "b@example.com"})
    Buyer().pay(paid["checkout_url"], "4242 4242 4242 4242")
    declined = create_payment(api)
    Buyer().pay(declined["checkout_url"], "4000000000000002")

    assert Payment.objects.get(pk=paid["id"]).status == "succeeded"
    assert Payment.objects.get(pk=declined["id"]).status == "failed"
    assert SandboxPaymentMethod.objects.filter(card_last4="4242").exists()
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            # Every column of every row, as PostgreSQL prints the row.
            cursor.execute(f"SELECT t::text FROM {connection.ops.quote_name(table)} AS t")  # noqa: S608
            for (row,) in cursor.fetchall():
                if contains_card_number(row.replace('\\"', '"')):
                    found.append((table, row[:200]))
    assert found == []
