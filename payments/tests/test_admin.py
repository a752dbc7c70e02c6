import re

import pytest
from django.contrib.admin.models import LogEntry

from conftest import client_for
from payments.models import APIKey
from payments.tests.factories import APIKeyFactory, CustomerFactory, PaymentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_client):
    return admin_client


def test_admin_lists_render(staff, merchant):
    CustomerFactory(merchant=merchant)
    APIKeyFactory(merchant=merchant)

    for url in [
        "/admin/",
        "/admin/payments/merchant/",
        f"/admin/payments/merchant/{merchant.pk}/change/",
        "/admin/payments/apikey/",
        "/admin/payments/customer/",
        "/admin/payments/payment/",
        "/admin/payments/refund/",
        "/admin/payments/credittransaction/",
        f"/admin/payments/customer/{CustomerFactory(merchant=merchant).pk}/change/",
        f"/admin/payments/payment/{PaymentFactory(merchant=merchant).pk}/change/",
    ]:
        assert staff.get(url).status_code == 200, url


def test_creating_a_key_in_the_admin_shows_it_once_and_it_works(staff, merchant):
    response = staff.post(
        "/admin/payments/apikey/add/",
        {"merchant": merchant.pk, "kind": "secret", "name": "backend"},
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raw_key = re.search(r"sk_test_[A-Za-z0-9]{32}", response.content.decode()).group(0)
    assert client_for(raw_key).get("/api/v1/customers").status_code == 200
    api_key = APIKey.objects.get(merchant=merchant)
    assert api_key.name == "backend"
    # Its record page never shows the key again.
    assert raw_key not in staff.get(f"/admin/payments/apikey/{api_key.pk}/change/").content.decode()
    assert LogEntry.objects.filter(object_id=api_key.pk).exists()


def test_revoking_keys_from_the_admin_is_logged_and_takes_effect(staff, merchant):
    api_key = APIKeyFactory(merchant=merchant)

    response = staff.post(
        "/admin/payments/apikey/",
        {"action": "revoke_selected", "_selected_action": [api_key.pk]},
        follow=True,
    )

    assert response.status_code == 200
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert client_for(api_key.raw_key).get("/api/v1/customers").status_code == 401
    assert LogEntry.objects.filter(
        object_id=api_key.pk, change_message__contains="Revoked"
    ).exists()


def test_keys_cannot_be_deleted_in_the_admin(staff, merchant):
    api_key = APIKeyFactory(merchant=merchant)

    response = staff.post(f"/admin/payments/apikey/{api_key.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert APIKey.objects.filter(pk=api_key.pk).exists()
