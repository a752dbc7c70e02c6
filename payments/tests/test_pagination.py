"""Cursor pagination: a cursor is opaque to clients, and a forged one is bad input."""

import base64
from urllib.parse import quote

import pytest

from payments.tests.factories import PaymentFactory
from payments.tests.test_authentication import assert_error

pytestmark = pytest.mark.django_db


def cursor(query: str) -> str:
    return base64.b64encode(query.encode()).decode()


def test_cursors_walk_the_list(api, merchant):
    PaymentFactory.create_batch(3, merchant=merchant)

    first = api.get("/api/v1/payments", {"limit": 2}).json()
    second = api.get(first["next"]).json()

    assert len(first["results"]) == 2 and len(second["results"]) == 1
    assert second["next"] is None


@pytest.mark.parametrize("raw", ["p=%00", "p=pay_%00x"])
def test_a_forged_cursor_with_a_nul_position_is_a_400(api, merchant, raw):
    # Its position goes into the query, and PostgreSQL refuses NUL in text: this was a 500.
    response = api.get(f"/api/v1/payments?cursor={quote(cursor(raw))}")

    assert assert_error(response, 400, "parameter_invalid", "invalid_request_error")["param"] == (
        "cursor"
    )


def test_a_cursor_that_is_not_one_is_a_400(api):
    response = api.get("/api/v1/payments", {"cursor": cursor("r=x")})

    assert_error(response, 400, "parameter_invalid", "invalid_request_error")
