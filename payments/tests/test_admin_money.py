"""
Staff money actions in the admin: refund, capture and cancel through a form and a
confirmation page, calling the same services as the API; role limits; search and filters.
"""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from billing.tests.flows import captured
from payments import services
from payments.models import Payment, PaymentEvent, Refund
from payments.providers.sandbox import SandboxProvider
from payments.sandbox import gateway
from payments.tests.factories import CustomerFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def _staff(client, username: str, group: str | None):
    user = get_user_model().objects.create_user(
        username=username, password="pw-123456789", is_staff=True
    )
    if group:
        user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return client


@pytest.fixture
def support(client):
    return _staff(client, "sam", "Support")


@pytest.fixture
def finance(client):
    return _staff(client, "fiona", "Finance")


def _refund(client, payment, amount, reason="", confirmed=False):
    data = {"amount": amount, "reason": reason}
    if confirmed:
        data["confirmed"] = "yes"
    return client.post(f"/admin/payments/payment/{payment.pk}/refund/", data)


def test_support_refunds_part_through_the_form_and_confirmation(support, merchant):
    payment = captured(merchant, "599.00")

    page = support.get(f"/admin/payments/payment/{payment.pk}/refund/")
    assert page.status_code == 200
    assert b'value="599.00"' in page.content  # defaults to what is left to refund

    review = _refund(support, payment, "100.00", "scratched disc")
    assert review.status_code == 200
    assert b"This cannot be undone" in review.content
    assert Refund.objects.count() == 0  # nothing happens before the confirmation

    done = _refund(support, payment, "100.00", "scratched disc", confirmed=True)

    assert done.status_code == 302
    refund = Refund.objects.get()
    assert (refund.amount, refund.reason, refund.source, refund.actor) == (
        100,
        "scratched disc",
        "admin",
        "admin:sam",
    )
    step = PaymentEvent.objects.get(payment=payment, type="refund_requested")
    assert (step.source, step.actor) == ("admin", "admin:sam")
    log = LogEntry.objects.get(object_id=payment.pk)
    assert "Refund 100.00 RUB (scratched disc)" in log.change_message
    assert log.user.username == "sam"


def test_support_above_the_refund_limit_is_refused_and_finance_is_not(client, merchant, settings):
    settings.SUPPORT_REFUND_LIMITS = {"RUB": "5000"}
    payment = captured(merchant, "6000.00")
    support = _staff(client, "sam", "Support")

    refused = _refund(support, payment, "6000.00", confirmed=True)

    assert refused.status_code == 200
    assert b"above your limit of 5000.00 RUB" in refused.content
    assert Refund.objects.count() == 0
    assert _refund(support, payment, "5000.00", confirmed=True).status_code == 302

    finance = _staff(client, "fiona", "Finance")
    assert _refund(finance, payment, "1000.00", confirmed=True).status_code == 302
    assert sorted(r.amount for r in Refund.objects.all()) == [1000, 5000]


def test_bad_amounts_are_form_errors_and_change_nothing(finance, merchant):
    payment = captured(merchant, "599.00")

    for amount in ["abc", "599.001", "-1", "600.00"]:
        response = _refund(finance, payment, amount, confirmed=True)
        assert response.status_code == 200, amount
        assert b"errornote" in response.content, amount
    assert Refund.objects.count() == 0


def test_staff_without_the_permission_cannot_refund(client, merchant):
    payment = captured(merchant, "599.00")
    viewer = _staff(client, "vic", None)

    assert viewer.get(f"/admin/payments/payment/{payment.pk}/refund/").status_code == 403
    assert _refund(viewer, payment, "1.00", confirmed=True).status_code == 403
    assert Refund.objects.count() == 0


def _authorized(merchant) -> Payment:
    """A sandbox payment the buyer authorized on the checkout page (capture pending)."""
    payment = services.payment_create(
        merchant=merchant, amount="599.00", currency="RUB", provider="sandbox", capture=False
    )
    services.payment_checkout_start(payment_id=payment.pk)
    sandbox_payment = gateway.checkout_submit(
        Payment.objects.get(pk=payment.pk).provider_payment_id, "4242424242424242"
    )
    return services.payment_sync_from_provider(
        provider="sandbox",
        remote=SandboxProvider().payment_retrieve(sandbox_payment.pk),
        source="provider",
    )


def test_capture_and_cancel_are_for_finance(client, merchant):
    authorized = _authorized(merchant)
    assert authorized.status == "requires_capture"
    pending = PaymentFactory(merchant=merchant)
    support = _staff(client, "sam", "Support")
    assert support.get(f"/admin/payments/payment/{authorized.pk}/capture/").status_code == 403

    finance = _staff(client, "fiona", "Finance")
    captured_response = finance.post(
        f"/admin/payments/payment/{authorized.pk}/capture/",
        {"amount": "500.00", "confirmed": "yes"},
    )
    canceled = finance.post(
        f"/admin/payments/payment/{pending.pk}/cancel/",
        {"amount": "599.00", "confirmed": "yes"},
    )

    assert captured_response.status_code == 302 and canceled.status_code == 302
    authorized.refresh_from_db()
    assert (authorized.status, authorized.amount_captured) == ("succeeded", 500)
    assert Payment.objects.get(pk=pending.pk).status == "canceled"
    assert PaymentEvent.objects.get(payment=pending, type="canceled").actor == "admin:fiona"


def test_the_change_page_offers_only_the_actions_the_state_and_role_allow(support, merchant):
    paid = captured(merchant, "599.00")
    pending = PaymentFactory(merchant=merchant)

    # As the changelist links them: the admin escapes "_" in ids as "_5F".
    paid_page = support.get(f"/admin/payments/payment/{quote(paid.pk)}/change/").content.decode()
    pending_page = support.get(
        f"/admin/payments/payment/{quote(pending.pk)}/change/"
    ).content.decode()

    assert f"/admin/payments/payment/{paid.pk}/refund/" in paid_page
    assert f"/admin/payments/payment/{paid.pk}/cancel/" not in paid_page
    assert f"/admin/payments/payment/{pending.pk}/refund/" not in pending_page
    assert f"/admin/payments/payment/{pending.pk}/cancel/" not in pending_page  # Support may not


def test_the_change_page_shows_invoices_and_callbacks(admin_client, merchant):
    payment = captured(merchant, "599.00")

    page = admin_client.get(f"/admin/payments/payment/{payment.pk}/change/").content.decode()

    assert "Invoices" in page and "TEST-" in page


def test_search_finds_payments_by_what_staff_know(admin_client, merchant):
    customer = CustomerFactory(merchant=merchant, email="ann@example.com", external_id="u-77")
    mine = PaymentFactory(
        merchant=merchant,
        customer=customer,
        order_id="order-12",
        provider="stripe",
        provider_payment_id="pi_3Abc",
    )
    other = PaymentFactory(merchant=merchant, order_id="order-13")

    def found(term):
        page = admin_client.get("/admin/payments/payment/", {"q": term}).content.decode()
        return mine.pk in page, other.pk in page

    for term in [mine.pk, "order-12", "pi_3Abc", "ANN@example.com", "u-77", customer.pk]:
        assert found(term) == (True, False), term
    assert found("nothing-like-it") == (False, False)


def test_filters_and_a_capped_count(admin_client, merchant, settings):
    from payments.admin import CappedCountPaginator

    with transaction.atomic():
        for _ in range(3):
            PaymentFactory(merchant=merchant, status="failed")
        PaymentFactory(merchant=merchant, currency="USD")
    page = admin_client.get("/admin/payments/payment/", {"status__exact": "failed"})
    assert page.status_code == 200
    assert page.context["cl"].result_count == 3
    assert admin_client.get("/admin/payments/payment/", {"created": "7d"}).status_code == 200
    paginator = CappedCountPaginator(Payment.objects.all(), 2)
    paginator.CAP = 2
    assert paginator.count == 3  # counted up to the cap and one more, never all rows
    assert services.payment_refundable  # the service the refund page calls
