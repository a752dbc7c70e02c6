"""
Input serializers: odd input is a 400 naming the field, never a 500. Output: the
written-out payment rendering says exactly what the declared fields say.
"""

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


def _declared_fields_output(payment):
    """What DRF renders from PaymentOutputSerializer's declared fields, field by field."""
    from rest_framework import serializers as drf_serializers

    from payments.serializers import PaymentOutputSerializer

    return drf_serializers.ModelSerializer.to_representation(
        PaymentOutputSerializer(payment), payment
    )


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {
            "status": "succeeded",
            "amount_captured": "599.00",
            "provider_payment_id": "sp_1",
            "card_brand": "visa",
            "card_last4": "4242",
            "order_id": "o-1",
            "reference": "ref-1",
            "description": "Premium",
            "return_url": "https://shop.example/back",
            "metadata": {"k": "v"},
            "line_items": [{"name": "Premium", "quantity": 1, "unit_amount": "599.00"}],
        },
        {"status": "failed", "failure_code": "card_declined", "failure_message": "Declined."},
        {"currency": "JPY", "amount": "100", "capture": False, "livemode": True},
        {
            "currency": "KWD",
            "amount": "1.500",
            "status": "refunded",
            "amount_captured": "1.500",
            "amount_refunded": "1.500",
        },
    ],
)
def test_the_written_out_payment_rendering_equals_the_declared_fields(fields):
    from datetime import UTC, datetime
    from decimal import Decimal

    from payments.serializers import PaymentOutputSerializer
    from payments.tests.factories import CustomerFactory, PaymentFactory

    extra = {k: Decimal(v) if k.startswith("amount") else v for k, v in fields.items()}
    payment = PaymentFactory(**extra)
    if fields:
        payment.customer = CustomerFactory(merchant=payment.merchant)
        payment.completed_at = datetime(2026, 12, 2, 10, 11, 12, 345678, tzinfo=UTC)
        payment.save()
    payment.refresh_from_db()

    assert PaymentOutputSerializer(payment).data == _declared_fields_output(payment)
    assert list(PaymentOutputSerializer(payment).data) == list(_declared_fields_output(payment))
