"""List filters: bad values are a 400 naming the parameter, never a 500."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from payments.ids import ulid_at
from payments.models import Refund
from payments.tests.factories import PaymentFactory
from payments.tests.test_authentication import assert_error
from payments.tests.test_refunds import paid

pytestmark = pytest.mark.django_db


def test_created_lte_at_the_last_representable_moment_lists_everything(api, merchant):
    payment = PaymentFactory(merchant=merchant)

    # One millisecond later does not exist: this was an OverflowError, a 500.
    response = api.get("/api/v1/payments", {"created_lte": "9999-12-31T23:59:59.999999Z"})

    assert response.status_code == 200, response.content
    assert [p["id"] for p in response.json()["results"]] == [payment.pk]


def test_created_gte_before_1970_lists_everything(api, merchant):
    payment = PaymentFactory(merchant=merchant)

    response = api.get("/api/v1/payments", {"created_gte": "0001-01-01T00:00:00Z"})

    assert [p["id"] for p in response.json()["results"]] == [payment.pk]


def test_a_created_bound_that_is_no_time_is_a_400(api):
    response = api.get("/api/v1/payments", {"created_gte": "yesterday"})

    assert assert_error(response, 400, "parameter_invalid", "invalid_request_error")["param"] == (
        "created_gte"
    )


def test_refunds_list_by_created_time(api, merchant):
    # The parameters were documented but ignored: every refund came back.
    payment = paid(merchant)

    def refund_made(when) -> Refund:
        return Refund.objects.create(
            id=f"re_{ulid_at(when)}", payment=payment, merchant=merchant,
            amount=Decimal("1.00"), currency="RUB", provider="sandbox", source="api",
        )  # fmt: skip

    old = refund_made(timezone.now() - timedelta(days=3))
    new = refund_made(timezone.now())
    since = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")

    newer = api.get("/api/v1/refunds", {"created_gte": since}).json()
    older = api.get("/api/v1/refunds", {"created_lte": since}).json()

    assert [r["id"] for r in newer["results"]] == [new.pk]
    assert [r["id"] for r in older["results"]] == [old.pk]
