"""Refunds: bounded by what was captured, also under concurrency; settled by the provider."""

from decimal import Decimal

import pytest

from conftest import client_for, run_concurrently
from payments import services
from payments.models import Payment, PaymentEvent, Refund, SandboxRefund
from payments.providers.base import ProviderDeclined, ProviderRefund
from payments.providers.sandbox import SandboxProvider
from payments.tests.factories import APIKeyFactory, PaymentFactory
from payments.tests.test_authentication import assert_error
from payments.tests.test_sandbox_flow import Buyer, create_payment
from webhooks.models import Event

pytestmark = pytest.mark.django_db


def refund(api, payment_id, **body):
    return api.post(f"/api/v1/payments/{payment_id}/refunds", body, format="json")


def paid(merchant, amount="599.00") -> Payment:
    """A succeeded payment with nothing refunded (refund calls are stubbed per test)."""
    return PaymentFactory(
        merchant=merchant,
        status="succeeded",
        amount=Decimal(amount),
        amount_captured=Decimal(amount),
        provider_payment_id="sbx_pay_x",
    )


def test_refund_request_is_pending_and_holds_its_amount(api, merchant):
    payment = paid(merchant)

    response = refund(api, payment.pk, amount="100.00", reason="requested_by_customer")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["object"] == "refund" and body["status"] == "pending"
    assert (body["amount"], body["currency"], body["payment"]) == ("100.00", "RUB", payment.pk)
    assert services.payment_refundable(payment) == Decimal("499.00")
    assert PaymentEvent.objects.filter(payment=payment, type="refund_requested").exists()


def test_default_amount_is_everything_left(api, merchant):
    payment = paid(merchant)
    refund(api, payment.pk, amount="99.00")

    body = refund(api, payment.pk).json()

    assert body["amount"] == "500.00"


@pytest.mark.parametrize("amount", ["600.00", "599.01"])
def test_over_refund_is_400_and_changes_nothing(api, merchant, amount):
    payment = paid(merchant)

    error = assert_error(
        refund(api, payment.pk, amount=amount),
        400,
        "refund_exceeds_refundable",
        "invalid_request_error",
    )
    assert error["param"] == "amount"
    assert not Refund.objects.exists()


@pytest.mark.parametrize("amount", ["0", "-1", "1.001", 5])
def test_bad_amounts_are_400(api, merchant, amount):
    payment = paid(merchant)

    assert refund(api, payment.pk, amount=amount).status_code == 400
    assert not Refund.objects.exists()


@pytest.mark.parametrize(
    "status", ["pending", "requires_capture", "failed", "canceled", "refunded"]
)
def test_only_succeeded_payments_can_be_refunded(api, merchant, status):
    payment = PaymentFactory(merchant=merchant, status=status)

    assert_error(refund(api, payment.pk), 409, "payment_invalid_state", "invalid_request_error")


def test_a_failed_refund_releases_its_amount(api, merchant, monkeypatch):
    payment = paid(merchant)

    def declined(self, *args, **kwargs):
        raise ProviderDeclined("card closed", code="charge_expired_for_refund")

    monkeypatch.setattr(SandboxProvider, "refund_create", declined)
    created = refund(api, payment.pk, amount="599.00").json()
    services.refund_dispatch_start(refund_id=created["id"])

    failed = Refund.objects.get(pk=created["id"])
    assert (failed.status, failed.failure_reason) == ("failed", "card closed")
    assert services.payment_refundable(payment) == Decimal("599.00")
    assert Event.objects.filter(type="refund.failed", object_id=failed.pk).exists()
    payment.refresh_from_db()
    assert payment.status == "succeeded"


def test_a_late_or_repeated_provider_report_settles_once(merchant):
    payment = paid(merchant)
    created = services.refund_create(payment=payment, amount="100.00", source="api")
    report = ProviderRefund(
        provider_refund_id="sbx_re_1",
        provider_payment_id="sbx_pay_x",
        status="succeeded",
        amount=Decimal("100.00"),
        currency="RUB",
        reference=created.pk,
    )

    for _ in range(2):
        services.refund_sync_from_provider(provider="sandbox", remote=report, source="provider")

    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", Decimal("100.00"))
    assert Event.objects.filter(type="refund.succeeded").count() == 1
    assert Refund.objects.get().provider_refund_id == "sbx_re_1"


def test_a_report_with_another_amount_is_refused(merchant):
    payment = paid(merchant)
    created = services.refund_create(payment=payment, amount="100.00", source="api")
    report = ProviderRefund(
        "sbx_re_1", "sbx_pay_x", "succeeded", Decimal("1.00"), "RUB", reference=created.pk
    )

    with pytest.raises(services.ProviderMismatch):
        services.refund_sync_from_provider(provider="sandbox", remote=report, source="provider")

    payment.refresh_from_db()
    assert payment.amount_refunded == 0


def test_refunds_are_idempotent(api, merchant):
    payment = paid(merchant)
    headers = {"Idempotency-Key": "refund-1"}

    first = api.post(
        f"/api/v1/payments/{payment.pk}/refunds",
        {"amount": "10.00"},
        format="json",
        headers=headers,
    )
    second = api.post(
        f"/api/v1/payments/{payment.pk}/refunds",
        {"amount": "10.00"},
        format="json",
        headers=headers,
    )

    assert second.content == first.content and second["Idempotent-Replayed"] == "true"
    assert Refund.objects.count() == 1


def test_lists_and_cross_merchant_404(api, other_api, merchant):
    payment = paid(merchant)
    created = refund(api, payment.pk, amount="1.00").json()

    assert [
        r["id"] for r in api.get(f"/api/v1/payments/{payment.pk}/refunds").json()["results"]
    ] == [created["id"]]
    assert api.get(f"/api/v1/refunds/{created['id']}").json()["id"] == created["id"]
    assert [r["id"] for r in api.get("/api/v1/refunds").json()["results"]] == [created["id"]]
    assert_error(
        other_api.get(f"/api/v1/refunds/{created['id']}"),
        404,
        "resource_missing",
        "invalid_request_error",
    )
    assert_error(refund(other_api, payment.pk), 404, "resource_missing", "invalid_request_error")


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_full_refunds_make_exactly_one(merchant, monkeypatch):
    monkeypatch.setattr(SandboxProvider, "refund_create", lambda *a, **k: _pending())
    payment = paid(merchant)
    raw_key = APIKeyFactory(merchant=merchant).raw_key

    statuses = run_concurrently(20, lambda: refund(client_for(raw_key), payment.pk).status_code)

    assert sorted(statuses) == [201] + [409] * 19
    assert Refund.objects.filter(payment=payment).count() == 1
    assert Refund.objects.get().amount == Decimal("599.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_partial_refunds_never_exceed_the_captured_amount(merchant, monkeypatch):
    monkeypatch.setattr(SandboxProvider, "refund_create", lambda *a, **k: _pending())
    payment = paid(merchant, "100.00")
    raw_key = APIKeyFactory(merchant=merchant).raw_key

    statuses = run_concurrently(
        12, lambda: refund(client_for(raw_key), payment.pk, amount="30.00").status_code
    )

    assert sorted(statuses) == [201] * 3 + [400] * 9
    assert sum(r.amount for r in Refund.objects.all()) == Decimal("90.00")


def _pending():
    return ProviderRefund("", "sbx_pay_x", "pending", Decimal(0), "RUB")


# --- End to end through the sandbox and its webhooks -----------------------------------


@pytest.mark.django_db(transaction=True)
def test_refund_100_then_499_of_599_ends_refunded(live_server, settings, merchant):
    settings.PUBLIC_BASE_URL = live_server.url
    api = client_for(APIKeyFactory(merchant=merchant).raw_key)
    payment = create_payment(api)
    Buyer().pay(payment["checkout_url"], "4242 4242 4242 4242")

    first = refund(api, payment["id"], amount="100.00").json()
    second = refund(api, payment["id"], amount="499.00").json()
    third = refund(api, payment["id"], amount="0.01")

    body = api.get(f"/api/v1/payments/{payment['id']}").json()
    assert (body["status"], body["amount_refunded"]) == ("refunded", "599.00")
    for created in (first, second):
        assert api.get(f"/api/v1/refunds/{created['id']}").json()["status"] == "succeeded"
    assert_error(third, 409, "payment_invalid_state", "invalid_request_error")
    steps = [
        e["type"] for e in api.get(f"/api/v1/payments/{payment['id']}/events").json()["results"]
    ]
    assert steps[-4:] == ["refund_requested", "partially_refunded", "refund_requested", "refunded"]
    assert Event.objects.filter(type="refund.succeeded").count() == 2
    assert SandboxRefund.objects.count() == 2


def test_a_failed_refund_the_provider_later_reports_succeeded_is_flagged(merchant, monkeypatch):
    """A second refund must not quietly follow money that did leave after all."""
    payment = paid(merchant)
    monkeypatch.setattr(
        SandboxProvider,
        "refund_create",
        lambda *a, **k: (_ for _ in ()).throw(ProviderDeclined("no")),
    )
    created = services.refund_create(payment=payment, amount="599.00", source="api")
    services.refund_dispatch_start(refund_id=created.pk)
    report = ProviderRefund(
        "sbx_re_1", "sbx_pay_x", "succeeded", Decimal("599.00"), "RUB", reference=created.pk
    )

    with pytest.raises(services.ProviderMismatch, match="no longer matches"):
        services.refund_sync_from_provider(provider="sandbox", remote=report, source="provider")


def test_a_report_about_another_payment_is_refused(merchant):
    payment = paid(merchant)
    created = services.refund_create(payment=payment, amount="100.00", source="api")
    report = ProviderRefund(
        "sbx_re_1",
        "sbx_pay_someone_else",
        "succeeded",
        Decimal("100.00"),
        "RUB",
        reference=created.pk,
    )

    with pytest.raises(services.ProviderMismatch):
        services.refund_sync_from_provider(provider="sandbox", remote=report, source="provider")
    assert Refund.objects.get().status == "pending"


def test_internal_callers_get_the_same_amount_rules(merchant):
    payment = paid(merchant)

    for bad in (Decimal("-1"), Decimal("0"), Decimal("1.001"), Decimal("NaN")):
        with pytest.raises(services.ValidationFailed):
            services.refund_create(payment=payment, amount=bad, source="admin")
    assert not Refund.objects.exists()
