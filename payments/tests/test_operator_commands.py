"""Operator commands: each prints a summary and exits non-zero on failure."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.tests.flows import paid_with_credits
from payments import services
from payments.models import IdempotencyKey, Payment, SandboxPayment
from payments.sandbox import gateway
from payments.tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _with_checkout(merchant) -> Payment:
    payment = services.payment_create(
        merchant=merchant, amount="599.00", currency="RUB", provider="sandbox"
    )
    return services.payment_checkout_start(payment_id=payment.pk)


def test_sync_payment_applies_what_the_provider_says_when_its_webhook_was_lost(merchant):
    payment = _with_checkout(merchant)
    gateway.checkout_submit(payment.provider_payment_id, "4242424242424242")  # webhook lost

    output = run("sync_payment", payment.pk)

    assert output.strip() == f"{payment.pk} (sandbox): pending -> succeeded"
    assert Payment.objects.get(pk=payment.pk).status == "succeeded"
    assert run("sync_payment", payment.pk).strip() == f"{payment.pk} (sandbox): unchanged"


def test_sync_payment_refuses_what_it_cannot_sync(merchant):
    customer = CustomerFactory(merchant=merchant)
    services.customer_credit_change(
        customer=customer, kind="grant", amount="10.00", currency="RUB", source="admin"
    )
    credits = paid_with_credits(merchant, customer, "10.00")
    unopened = services.payment_create(
        merchant=merchant, amount="1.00", currency="RUB", provider="sandbox"
    )

    for payment_id, message in [
        ("pay_nope", "No such payment"),
        (credits.pk, "no provider to ask"),
        (unopened.pk, "no payment for it yet"),
    ]:
        with pytest.raises(CommandError, match=message):
            run("sync_payment", payment_id)


def test_purge_idempotency_keys_deletes_only_old_ones(merchant):
    for age in (25, 1):
        key = IdempotencyKey.objects.create(
            merchant=merchant,
            key=f"k{age}",
            request_method="POST",
            request_path="/api/v1/payments",
            request_fingerprint="f",
            response_status=201,
            response_body=b"{}",
            response_content_type="application/json",
        )
        IdempotencyKey.objects.filter(pk=key.pk).update(
            created_at=timezone.now() - timedelta(hours=age)
        )

    assert run("purge_idempotency_keys").strip() == "Deleted 1 idempotency key(s) older than 24 h."
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["k1"]


def test_expire_pending_payments_cancels_stale_pay_links_and_closes_their_checkouts(merchant):
    stale = _with_checkout(merchant)
    Payment.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(hours=25))
    fresh = _with_checkout(merchant)

    output = run("expire_pending_payments")

    assert output.startswith("Expired 1 pending payment(s) older than 24 h")
    assert Payment.objects.get(pk=stale.pk).status == "canceled"
    assert SandboxPayment.objects.get(pk=stale.provider_payment_id).status == "canceled"
    assert Payment.objects.get(pk=fresh.pk).status == "pending"
    with pytest.raises(CommandError, match="at least 1"):
        run("expire_pending_payments", "--hours", "0")
