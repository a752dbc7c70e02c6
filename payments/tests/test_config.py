import pytest

pytestmark = pytest.mark.django_db

URL = "/api/v1/config"


def test_publishable_key_reads_client_config(publishable_api, merchant):
    response = publishable_api.get(URL)

    assert response.status_code == 200
    assert response.json() == {
        "object": "config",
        "merchant": merchant.id,
        "merchant_name": merchant.name,
        "livemode": False,
        "default_provider": "sandbox",
        "providers": ["sandbox", "credits"],
        "stripe_publishable_key": None,
    }


def test_config_lists_providers_whose_credentials_are_set(api, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_fake"
    settings.SANDBOX_ENABLED = False

    body = api.get(URL).json()

    assert body["providers"] == ["stripe", "credits"]
    assert body["stripe_publishable_key"] == "pk_test_fake"


def test_publishable_key_cannot_write(publishable_api):
    assert publishable_api.post(URL, {}, format="json").status_code == 405
    assert publishable_api.get("/api/v1/customers").status_code == 403


def test_config_needs_a_key(anonymous_api):
    assert anonymous_api.get(URL).status_code == 401
