import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from conftest import client_for
from payments.models import APIKey, Customer, Merchant

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_merchant_json_prints_working_keys():
    data = json.loads(run("create_merchant", "Acme Films", "--json"))

    assert set(data) >= {"id", "secret_key", "publishable_key"}
    assert data["secret_key"].startswith("sk_test_")
    assert data["publishable_key"].startswith("pk_test_")
    assert Merchant.objects.get(pk=data["id"]).name == "Acme Films"
    assert client_for(data["secret_key"]).get("/api/v1/customers").status_code == 200
    # The publishable key authenticates but cannot act as the merchant.
    assert client_for(data["publishable_key"]).get("/api/v1/customers").status_code == 403


def test_create_merchant_needs_a_name():
    with pytest.raises(CommandError):
        run("create_merchant", "  ", "--json")
    assert not Merchant.objects.exists()


@pytest.mark.parametrize(
    "kind, prefix, status", [("secret", "sk_live_", 200), ("publishable", "pk_live_", 403)]
)
def test_create_api_key(merchant, kind, prefix, status):
    data = json.loads(run("create_api_key", merchant.id, "--type", kind, "--live", "--json"))

    assert data["key"].startswith(prefix)
    assert APIKey.objects.get(pk=data["id"]).merchant == merchant
    assert client_for(data["key"]).get("/api/v1/customers").status_code == status


def test_create_api_key_for_unknown_merchant_fails_clearly():
    with pytest.raises(CommandError, match="No such merchant"):
        run("create_api_key", "mer_nope", "--type", "secret")
    assert not APIKey.objects.exists()


def test_seed_demo_is_idempotent_and_its_credentials_work(client):
    first = json.loads(run("seed_demo", "--json"))
    counts = (Merchant.objects.count(), APIKey.objects.count(), Customer.objects.count())
    second = json.loads(run("seed_demo", "--json"))

    assert first == second
    assert (Merchant.objects.count(), APIKey.objects.count(), Customer.objects.count()) == counts
    assert get_user_model().objects.filter(username=first["staff_username"]).count() == 1
    customers = client_for(first["secret_key"]).get("/api/v1/customers")
    assert customers.status_code == 200
    assert len(customers.json()["results"]) == 3
    login = client.post(
        "/admin/login/?next=/admin/",
        {"username": first["staff_username"], "password": first["staff_password"]},
    )
    assert login.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_seed_demo_reissues_a_revoked_demo_key():
    first = json.loads(run("seed_demo", "--json"))
    APIKey.objects.filter(kind="secret").update(revoked_at="2026-01-01T00:00:00Z")

    second = json.loads(run("seed_demo", "--json"))

    assert second["secret_key"] != first["secret_key"]
    assert client_for(second["secret_key"]).get("/api/v1/customers").status_code == 200


def test_seed_demo_prints_the_key_and_login():
    out = run("seed_demo")

    assert "sk_test_" in out and "Staff login" in out and "/admin/" in out
