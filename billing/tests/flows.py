"""
Money moved through the real payments services, so that every booking in these tests comes
from an outcome payments announced, exactly as in production (no ledger rows by hand).
"""

from decimal import Decimal

from django.db import transaction

from payments import services
from payments.models import Customer, Merchant, Payment, PaymentStatus, Refund
from payments.providers.base import ProviderRefund


def captured(
    merchant: Merchant, amount: str | Decimal = "599.00", customer: Customer | None = None
) -> Payment:
    """A sandbox payment, created and then captured as the provider's webhook would."""
    payment = services.payment_create(
        merchant=merchant, amount=Decimal(amount), currency="RUB", provider="sandbox",
        customer=customer,
    )  # fmt: skip
    with transaction.atomic():
        return services.payment_transition(
            payment=services.payment_lock(payment.pk),
            to_status=PaymentStatus.SUCCEEDED,
            source="provider",
            amount_captured=payment.amount,
        )


def paid_with_credits(merchant: Merchant, customer: Customer, amount: str | Decimal) -> Payment:
    """A payment from the customer's prepaid credit: succeeds at once."""
    return services.payment_create(
        merchant=merchant, amount=Decimal(amount), currency="RUB", provider="credits",
        customer=customer,
    )  # fmt: skip


def credit_change(customer: Customer, kind: str, amount: str | Decimal):
    return services.customer_credit_change(
        customer=customer, kind=kind, amount=Decimal(amount), currency="RUB", source="admin"
    )


def refunded(payment: Payment, amount: str | Decimal | None = None, status="succeeded") -> Refund:
    """
    A refund requested and then settled by the provider's report (`status`). Credits
    refunds settle inside `refund_create` itself, so there is nothing to report.
    """
    refund = services.refund_create(
        payment=payment, amount=None if amount is None else Decimal(amount), source="api"
    )
    if refund.status != "pending":
        return refund
    report = ProviderRefund(
        provider_refund_id=f"sbx_re_{refund.pk}",
        provider_payment_id="",
        status=status,
        amount=refund.amount,
        currency=refund.currency,
        reference=refund.pk,
    )
    return services.refund_sync_from_provider(
        provider=payment.provider, remote=report, source="provider"
    )
