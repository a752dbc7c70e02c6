from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import client_for
from payments import credentials, selectors, services
from payments.models import APIKey
from payments.tests.factories import APIKeyFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/customers"


def assert_error(response, status, code, error_type):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "code", "message", "param"}
    assert body["error"]["code"] == code
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    return body["error"]


def test_secret_key_acts_for_its_merchant(api):
    response = api.get(URL)

    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": []}


def test_missing_credentials_are_401_with_a_bearer_challenge(anonymous_api):
    response = anonymous_api.get(URL)

    assert_error(response, 401, "authentication_required", "authentication_error")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer sk_test_" + "x" * 32,  # well-formed, unknown
        "Bearer not-a-key",
        "Token sk_test_" + "x" * 32,
        "Bearer",
        "Bearer a b",
        "Basic dXNlcjpwYXNz",
    ],
)
def test_wrong_credentials_are_401(anonymous_api, secret_key, header):
    anonymous_api.credentials(HTTP_AUTHORIZATION=header)

    response = anonymous_api.get(URL)

    assert_error(response, 401, "invalid_api_key", "authentication_error")


def test_revoked_key_is_refused(merchant):
    api_key = APIKeyFactory(merchant=merchant)
    client = client_for(api_key.raw_key)
    assert client.get(URL).status_code == 200

    services.api_key_revoke(api_key=api_key)

    error = assert_error(client.get(URL), 401, "invalid_api_key", "authentication_error")
    assert "revoked" in error["message"]


def test_a_key_revoked_by_another_process_is_refused_once_the_kept_copy_expires(
    merchant, settings, monkeypatch
):
    # Another process's revocation: the row changes, no signal reaches this process.
    settings.API_KEY_CACHE_SECONDS = 2
    api_key = APIKeyFactory(merchant=merchant)
    client = client_for(api_key.raw_key)
    now = [1000.0]
    monkeypatch.setattr(selectors.time, "monotonic", lambda: now[0])
    assert client.get(URL).status_code == 200
    APIKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())

    now[0] += 1.9
    assert client.get(URL).status_code == 200  # the copy kept for up to 2 s
    now[0] += 0.2
    assert_error(client.get(URL), 401, "invalid_api_key", "authentication_error")


def test_a_disabled_merchant_is_refused_at_once_in_the_process_that_disabled_it(merchant):
    client = client_for(APIKeyFactory(merchant=merchant).raw_key)
    assert client.get(URL).status_code == 200

    merchant.is_active = False
    merchant.save()

    assert_error(client.get(URL), 403, "account_disabled", "permission_error")


def test_with_no_keeping_every_request_looks_the_key_up(merchant, settings):
    settings.API_KEY_CACHE_SECONDS = 0
    api_key = APIKeyFactory(merchant=merchant)
    client = client_for(api_key.raw_key)
    assert client.get(URL).status_code == 200
    APIKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())

    assert_error(client.get(URL), 401, "invalid_api_key", "authentication_error")


def test_publishable_key_cannot_use_secret_endpoints(publishable_api):
    assert_error(publishable_api.get(URL), 403, "permission_denied", "permission_error")
    assert_error(
        publishable_api.post(URL, {"external_id": "u1"}, format="json"),
        403,
        "permission_denied",
        "permission_error",
    )


def test_disabled_merchant_is_refused(merchant, api):
    merchant.is_active = False
    merchant.save()

    assert_error(api.get(URL), 403, "account_disabled", "permission_error")


def test_live_keys_authenticate_too(merchant):
    api_key = APIKeyFactory(merchant=merchant, livemode=True)

    assert api_key.raw_key.startswith("sk_live_")
    assert client_for(api_key.raw_key).get(URL).status_code == 200


def test_only_a_hash_of_the_key_is_stored(merchant):
    api_key = APIKeyFactory(merchant=merchant)

    row = APIKey.objects.filter(pk=api_key.pk).values().get()
    assert api_key.raw_key not in [str(value) for value in row.values()]
    assert row["key_hash"] == credentials.key_hash(api_key.raw_key)
    assert row["prefix"] == api_key.raw_key[:12]


def test_keys_are_random_and_typed():
    secret = credentials.key_generate("secret", False)
    publishable = credentials.key_generate("publishable", True)

    assert secret.startswith("sk_test_") and len(secret) == 40
    assert publishable.startswith("pk_live_")
    assert credentials.key_generate("secret", False) != secret


def test_last_used_is_recorded_but_not_rewritten_on_every_request(merchant):
    api_key = APIKeyFactory(merchant=merchant)
    client = client_for(api_key.raw_key)

    client.get(URL)
    api_key.refresh_from_db()
    first_use = api_key.last_used_at
    assert first_use is not None and timezone.now() - first_use < timedelta(seconds=5)

    client.get(URL)
    api_key.refresh_from_db()
    assert api_key.last_used_at == first_use


def test_a_key_must_match_the_type_it_claims(merchant):
    from payments.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        services.api_key_create(
            merchant=merchant, kind="publishable", raw_key=credentials.key_generate("secret", False)
        )
