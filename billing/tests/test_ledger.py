"""The ledger: what each outcome books, balances as sums, and what ledger_verify catches."""

from decimal import Decimal

import pytest
from django.db import transaction

from billing.ledger import (
    LedgerError,
    customer_credit_balance,
    ledger_book,
    ledger_verify,
    merchant_net_volume,
)
from billing.models import AppendOnlyError, LedgerEntry, LedgerTransaction
from billing.tests.flows import captured, credit_change, paid_with_credits, refunded
from payments import services
from payments.models import CustomerBalance, PaymentStatus
from payments.outcomes import Outcome
from payments.tests.factories import CustomerFactory, MerchantFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def legs(booked: LedgerTransaction) -> set[tuple[str, Decimal]]:
    return {(entry.account, entry.amount) for entry in booked.entries.all()}


def booking(kind: str, reference: str) -> LedgerTransaction:
    return LedgerTransaction.objects.get(kind=kind, reference=reference)


@pytest.fixture
def customer(merchant):
    return CustomerFactory(merchant=merchant)


def test_a_captured_payment_is_owed_by_its_provider(merchant):
    payment = captured(merchant, "599.00")

    booked = booking("payment.succeeded", payment.pk)

    assert legs(booked) == {
        ("provider_receivable:sandbox", Decimal("599.00")),
        ("sales", Decimal("-599.00")),
    }
    assert (booked.payment_id, booked.merchant_id, booked.livemode) == (
        payment.pk,
        merchant.pk,
        False,
    )
    assert {e.currency for e in booked.entries.all()} == {"RUB"}


def test_a_credits_payment_consumes_the_customers_credit(merchant, customer):
    grant = credit_change(customer, "grant", "100.00")

    payment = paid_with_credits(merchant, customer, "60.00")

    assert legs(booking("credit.granted", grant.pk)) == {
        ("credits_issued", Decimal("100.00")),
        (f"customer_credit:{customer.pk}", Decimal("-100.00")),
    }
    assert legs(booking("payment.succeeded", payment.pk)) == {
        (f"customer_credit:{customer.pk}", Decimal("60.00")),
        ("sales", Decimal("-60.00")),
    }
    assert customer_credit_balance(customer.pk, "RUB") == Decimal("40.00")


def test_a_deduction_books_the_grant_in_reverse(customer):
    credit_change(customer, "grant", "100.00")

    deduct = credit_change(customer, "deduct", "30.00")

    assert legs(booking("credit.deducted", deduct.pk)) == {
        (f"customer_credit:{customer.pk}", Decimal("30.00")),
        ("credits_issued", Decimal("-30.00")),
    }
    assert customer_credit_balance(customer.pk, "RUB") == Decimal("70.00")


def test_refunds_bring_the_payments_net_down_to_zero(merchant):
    payment = captured(merchant, "599.00")

    partial = refunded(payment, "100.00")

    assert legs(booking("refund.succeeded", partial.pk)) == {
        ("sales", Decimal("100.00")),
        ("provider_receivable:sandbox", Decimal("-100.00")),
    }
    assert booking("refund.succeeded", partial.pk).payment_id == payment.pk
    assert merchant_net_volume(merchant.pk, "RUB") == Decimal("499.00")

    refunded(payment)  # the rest

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REFUNDED
    assert merchant_net_volume(merchant.pk, "RUB") == Decimal("0")
    assert ledger_verify() == []


def test_a_credits_refund_gives_the_credit_back(merchant, customer):
    credit_change(customer, "grant", "100.00")
    payment = paid_with_credits(merchant, customer, "60.00")

    refund = refunded(payment, "20.00")

    assert legs(booking("refund.succeeded", refund.pk)) == {
        ("sales", Decimal("20.00")),
        (f"customer_credit:{customer.pk}", Decimal("-20.00")),
    }
    assert customer_credit_balance(customer.pk, "RUB") == Decimal("60.00")
    assert ledger_verify() == []


def test_outcomes_that_move_no_money_book_nothing(merchant):
    failed = services.payment_create(merchant=merchant, amount="10.00", currency="RUB")
    services.payment_fail(payment_id=failed.pk, code="card_declined", message="", source="task")
    canceled = services.payment_create(merchant=merchant, amount="10.00", currency="RUB")
    services.payment_cancel(payment=canceled, source="api")
    authorized = services.payment_create(
        merchant=merchant, amount="10.00", currency="RUB", capture=False
    )
    with transaction.atomic():
        services.payment_transition(
            payment=services.payment_lock(authorized.pk),
            to_status=PaymentStatus.REQUIRES_CAPTURE,
            source="provider",
        )
    assert not LedgerTransaction.objects.exists()

    payment = captured(merchant, "50.00")
    refunded(payment, "50.00", status="failed")

    assert list(LedgerTransaction.objects.values_list("kind", flat=True)) == ["payment.succeeded"]
    assert ledger_verify() == []


def test_the_same_outcome_announced_twice_books_once(merchant):
    payment = captured(merchant, "599.00")

    with transaction.atomic():
        services.outcome_announce(payment, "payment.succeeded")

    assert LedgerTransaction.objects.count() == 1
    assert LedgerEntry.objects.count() == 2
    assert merchant_net_volume(merchant.pk, "RUB") == Decimal("599.00")


def test_a_repeated_outcome_leaves_the_callers_transaction_usable(merchant):
    payment = captured(merchant, "599.00")
    outcome = Outcome(
        type="payment.succeeded",
        merchant_id=merchant.pk,
        livemode=False,
        object_id=payment.pk,
        data={"amount_captured": "599.00", "currency": "RUB", "provider": "sandbox"},
    )

    with transaction.atomic():
        assert ledger_book(outcome) is None
        # Had the duplicate insert aborted the transaction, this query would fail.
        assert LedgerTransaction.objects.count() == 1


def test_balances_and_net_volume_are_sums_of_the_ledger(merchant, customer):
    other = MerchantFactory()
    captured(merchant, "100.00")
    captured(merchant, "250.50")
    captured(other, "999.00")
    refunded(captured(merchant, "40.00"), "15.00")
    credit_change(customer, "grant", "300.00")
    credit_change(customer, "deduct", "50.00")
    paid_with_credits(merchant, customer, "75.00")

    assert merchant_net_volume(merchant.pk, "RUB") == Decimal("100.00") + Decimal(
        "250.50"
    ) + Decimal("25.00") + Decimal("75.00")
    assert merchant_net_volume(merchant.pk, "RUB", livemode=True) == 0
    assert merchant_net_volume(merchant.pk, "USD") == 0
    assert merchant_net_volume(other.pk, "RUB") == Decimal("999.00")
    assert customer_credit_balance(customer.pk, "RUB") == Decimal("175.00")
    assert CustomerBalance.objects.get(customer=customer).amount == Decimal("175.00")
    assert customer_credit_balance(CustomerFactory(merchant=merchant).pk, "RUB") == 0


def test_ledger_rows_cannot_be_changed_or_removed_from_code(merchant):
    captured(merchant, "10.00")
    booked = LedgerTransaction.objects.get()
    entry = booked.entries.first()

    entry.amount = Decimal("1.00")
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        booked.delete()
    with pytest.raises(AppendOnlyError):
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=0)
    with pytest.raises(AppendOnlyError):
        LedgerEntry.objects.all().delete()

    assert LedgerEntry.objects.get(pk=entry.pk).amount == Decimal("10.00")


def test_a_credits_payment_without_a_customer_is_refused_not_booked_wrong(merchant):
    outcome = Outcome(
        type="payment.succeeded",
        merchant_id=merchant.pk,
        livemode=False,
        object_id="pay_x",
        data={
            "amount_captured": "5.00",
            "currency": "RUB",
            "provider": "credits",
            "customer": None,
        },
    )

    with pytest.raises(LedgerError, match="no customer"):
        ledger_book(outcome)


def test_verify_names_a_captured_payment_that_was_never_booked(merchant):
    # Written straight to the table: no outcome was announced, so nothing was booked.
    payment = PaymentFactory(merchant=merchant, status="succeeded", amount_captured=Decimal(599))

    (problem,) = ledger_verify()

    assert payment.pk in problem and "no payment.succeeded booking" in problem


def test_verify_names_a_balance_that_drifted_from_the_ledger(customer):
    credit_change(customer, "grant", "100.00")
    CustomerBalance.objects.filter(customer=customer).update(amount=Decimal("90.00"))

    (problem,) = ledger_verify()

    assert customer.pk in problem and "90.0000" in problem and "100.0000" in problem


def test_verify_names_money_booked_against_a_payment_that_took_none(merchant):
    pending = services.payment_create(merchant=merchant, amount="5.00", currency="RUB")
    ledger_book(
        Outcome(
            type="payment.succeeded",
            merchant_id=merchant.pk,
            livemode=False,
            object_id=pending.pk,
            data={"amount_captured": "5.00", "currency": "RUB", "provider": "sandbox"},
        )
    )

    (problem,) = ledger_verify()

    assert f"books payment {pending.pk}, which is pending" in problem
