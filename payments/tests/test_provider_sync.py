"""Applying a provider's account of a payment: only a consistent, allowed move counts."""

from decimal import Decimal

import pytest

from payments import services
from payments.models import PaymentEvent
from payments.providers.base import ProviderPayment
from payments.tests.factories import PaymentFactory

pytestmark = pytest.mark.django_db


def remote_for(payment, **changes) -> ProviderPayment:
    fields = {
        "provider_payment_id": "sbx_pay_1",
        "reference": payment.pk,
        "status": "succeeded",
        "amount": payment.amount,
        "currency": payment.currency,
        "amount_captured": payment.amount,
    }
    return ProviderPayment(**{**fields, **changes})


def sync(payment, **changes):
    return services.payment_sync_from_provider(
        provider="sandbox", remote=remote_for(payment, **changes), source="provider", actor="t"
    )


def test_a_consistent_success_moves_the_payment():
    payment = PaymentFactory()

    sync(payment, card_last4="4242", payment_method_id="sbx_pm_1")

    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert payment.amount_captured == Decimal("599.00")
    assert (payment.card_last4, payment.provider_payment_method_id) == ("4242", "sbx_pm_1")


@pytest.mark.parametrize(
    "changes",
    [{"amount": Decimal("1.00")}, {"currency": "USD"}, {"provider_payment_id": "sbx_pay_other"}],
)
def test_a_report_that_disagrees_with_our_payment_changes_nothing(changes):
    payment = PaymentFactory(provider_payment_id="sbx_pay_1")

    with pytest.raises(services.ProviderMismatch):
        sync(payment, **changes)

    payment.refresh_from_db()
    assert payment.status == "pending"
    assert not PaymentEvent.objects.filter(payment=payment).exists()


def test_another_providers_report_is_not_applied():
    payment = PaymentFactory(provider="stripe")

    assert sync(payment) is None

    payment.refresh_from_db()
    assert payment.status == "pending"


def test_a_late_older_report_is_recorded_but_ignored():
    payment = PaymentFactory(status="succeeded", capture=False)

    sync(payment, status="requires_capture")

    payment.refresh_from_db()
    assert payment.status == "succeeded"
    event = PaymentEvent.objects.get(payment=payment)
    assert event.type == "provider_update_ignored"
    assert event.data == {"provider_status": "requires_capture", "status": "succeeded"}


def test_a_repeated_report_is_a_no_op():
    payment = PaymentFactory()
    sync(payment)

    sync(payment)

    assert PaymentEvent.objects.filter(payment=payment).count() == 1


@pytest.mark.parametrize("ours", ["canceled", "failed"])
@pytest.mark.parametrize("theirs", ["succeeded", "requires_capture"])
def test_money_taken_on_a_payment_we_closed_is_an_error_not_silence(ours, theirs):
    payment = PaymentFactory(status=ours)

    with pytest.raises(services.ProviderMismatch, match="refunded"):
        sync(payment, status=theirs)

    payment.refresh_from_db()
    assert payment.status == ours
