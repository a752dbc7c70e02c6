"""Every error, whatever raised it, answers in the contract's one shape."""

import logging

import pytest
from django.test import override_settings

from payments.tests.test_authentication import assert_error

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v2/customers", "/webhooks/unknown"])
@pytest.mark.parametrize("debug", [False, True])
def test_unknown_urls_are_404_in_the_error_shape(client, path, debug):
    with override_settings(DEBUG=debug):
        response = client.get(path)

    assert response["Content-Type"] == "application/json"
    assert_error(response, 404, "resource_missing", "invalid_request_error")


def test_wrong_method_is_405(api):
    response = api.delete("/api/v1/customers")

    assert_error(response, 405, "method_not_allowed", "invalid_request_error")


def test_validation_error_names_the_field(api):
    response = api.post("/api/v1/customers", {"external_id": "u1", "email": "nope"}, format="json")

    error = assert_error(response, 400, "parameter_invalid", "invalid_request_error")
    assert error["param"] == "email"


def test_missing_field_is_parameter_missing(api):
    error = assert_error(
        api.post("/api/v1/customers", {}, format="json"),
        400,
        "parameter_missing",
        "invalid_request_error",
    )
    assert error["param"] == "external_id"


def test_nested_field_errors_name_the_path(api):
    response = api.post(
        "/api/v1/customers", {"external_id": "u1", "metadata": {"k": ["x"]}}, format="json"
    )

    error = assert_error(response, 400, "parameter_invalid", "invalid_request_error")
    assert error["param"] == "metadata.k"


def test_unknown_parameter_is_refused(api):
    error = assert_error(
        api.post("/api/v1/customers", {"external_id": "u1", "emial": "a@b.c"}, format="json"),
        400,
        "parameter_unknown",
        "invalid_request_error",
    )
    assert error["param"] == "emial"


def test_malformed_json_is_400(api):
    response = api.generic(
        "POST", "/api/v1/customers", '{"external_id": ', content_type="application/json"
    )

    assert_error(response, 400, "parse_error", "invalid_request_error")


def test_form_encoded_body_is_415(api):
    response = api.post("/api/v1/customers", {"external_id": "u1"})  # multipart

    assert_error(response, 415, "unsupported_media_type", "invalid_request_error")


@pytest.mark.urls("payments.tests.urls_failing")
def test_unhandled_exception_in_an_api_view_is_a_500_in_the_shape(api, caplog):
    with caplog.at_level(logging.ERROR, logger="payments.api"):
        response = api.get("/api/v1/boom")

    assert_error(response, 500, "internal_error", "api_error")
    assert "boom" not in response.json()["error"]["message"]  # no internals leak out
    assert any("Unhandled error" in record.message for record in caplog.records)


@pytest.mark.urls("payments.tests.urls_failing")
def test_unhandled_exception_outside_drf_is_a_500_in_the_shape(client):
    client.raise_request_exception = False

    response = client.get("/api/v1/plain-boom")

    assert_error(response, 500, "internal_error", "api_error")
