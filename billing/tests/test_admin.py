import pytest

from billing.models import LedgerTransaction
from billing.tests.flows import captured

pytestmark = pytest.mark.django_db


def test_the_ledger_is_read_only_in_the_admin(admin_client, merchant):
    captured(merchant, "10.00")
    booked = LedgerTransaction.objects.get()

    listing = admin_client.get("/admin/billing/ledgertransaction/")
    page = admin_client.get(f"/admin/billing/ledgertransaction/{booked.pk}/change/")

    assert listing.status_code == page.status_code == 200
    assert b"provider_receivable:sandbox" in page.content
    assert b'name="_save"' not in page.content
    assert admin_client.get("/admin/billing/ledgertransaction/add/").status_code == 403
    assert (
        admin_client.post(f"/admin/billing/ledgertransaction/{booked.pk}/delete/").status_code
        == 403
    )
