"""
The OpenAPI schema documents what the API really answers (`payments.schema`); the
schemathesis run (payments_project/tests/test_schema_fuzz.py) holds every answer to it.
"""

import pytest

pytestmark = pytest.mark.django_db

METHODS = {"get", "post", "put", "patch", "delete"}
ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from django.test import Client

    with django_db_blocker.unblock():
        return Client().get("/api/schema/", {"format": "json"}).json()


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def json_schema(response: dict) -> dict:
    return response["content"]["application/json"]["schema"]


def test_every_operation_documents_its_errors_in_the_one_shape(schema):
    error = schema["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["required"]) == {"type", "code", "message", "param"}
    assert error["properties"]["param"]["nullable"] is True

    for label, operation in operations(schema):
        responses = operation["responses"]
        for status in ("400", "401", "403", "404", "429"):
            assert json_schema(responses[status]) == ERROR, (label, status)
        if "requestBody" in operation:
            assert {"413", "415"} <= set(responses), label
    throttled = schema["paths"]["/api/v1/payments"]["get"]["responses"]["429"]
    assert "Retry-After" in throttled["headers"]


def test_money_moving_posts_document_idempotency(schema):
    for path in (
        "/api/v1/payments",
        "/api/v1/payments/{payment_id}/capture",
        "/api/v1/payments/{payment_id}/cancel",
        "/api/v1/payments/{payment_id}/refunds",
        "/api/v1/customers/{customer_id}/credits",
        "/api/v1/subscriptions",
    ):
        operation = schema["paths"][path]["post"]
        header = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
        assert (header["in"], header["schema"]["maxLength"]) == ("header", 255)
        assert json_schema(operation["responses"]["409"]) == ERROR
        assert json_schema(operation["responses"]["422"]) == ERROR
        success = next(r for status, r in operation["responses"].items() if status < "300")
        assert "Idempotent-Replayed" in success["headers"]


def test_lists_are_documented_as_cursor_pages(schema):
    listed = schema["paths"]["/api/v1/payments"]["get"]
    page = schema["components"]["schemas"]["PaginatedPaymentOutputList"]

    assert json_schema(listed["responses"]["200"]) == {
        "$ref": "#/components/schemas/PaginatedPaymentOutputList"
    }
    assert set(page["required"]) == {"next", "previous", "results"}
    assert page["properties"]["next"]["nullable"] is True
    assert page["properties"]["results"]["items"] == {"$ref": "#/components/schemas/PaymentOutput"}
    limit = next(p for p in listed["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
    assert {p["name"] for p in listed["parameters"]} >= {"cursor", "created_gte", "created_lte"}


def test_text_that_reads_as_null_when_empty_is_nullable(schema):
    components = schema["components"]["schemas"]

    for component, field in [
        ("PaymentOutput", "order_id"),
        ("PaymentOutput", "failure_code"),
        ("RefundOutput", "reason"),
        ("InvoiceOutput", "subscription"),
        ("InvoiceLineOutput", "plan"),
        ("PaymentEventOutput", "from_status"),
    ]:
        assert components[component]["properties"][field]["nullable"] is True, (component, field)
    # "" when unknown: a string, but no promise of an email address.
    assert "format" not in components["CustomerOutput"]["properties"]["email"]


def test_deleting_an_endpoint_is_documented_as_what_it_answers(schema):
    responses = schema["paths"]["/api/v1/webhook_endpoints/{endpoint_id}"]["delete"]["responses"]

    assert "204" not in responses
    deleted = schema["components"]["schemas"][json_schema(responses["200"])["$ref"].split("/")[-1]]
    assert set(deleted["properties"]) == {"id", "object", "deleted"}
