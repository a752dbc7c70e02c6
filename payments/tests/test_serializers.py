"""Input serializers: odd input is a 400 naming the field, never a 500."""

import pytest

from payments.models import Customer, Payment
from payments.tests.test_authentication import assert_error

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("reference", ["\x00", "cus_\x00", "c" * 256])
def test_a_customer_id_that_cannot_be_one_is_a_400(api, reference):
    # The id went straight into a query, and PostgreSQL refuses NUL in text: a 500.
    response = api.post(
        "/api/v1/payments",
        {"amount": "599.00", "currency": "RUB", "customer": reference},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == "customer"
    assert not Payment.objects.exists()


def test_a_customer_object_is_checked_like_a_new_customer(api):
    response = api.post(
        "/api/v1/payments",
        {"amount": "599.00", "currency": "RUB", "customer": {"external_id": "\x00"}},
        format="json",
    )

    error = assert_error(response, 400, "null_characters_not_allowed", "invalid_request_error")
    assert error["param"] == "customer.external_id"
    assert not Customer.objects.exists()
