"""
The ledger stays sound whatever happens: any sequence of payments, refunds (settled or
failed), credit grants, deductions and credit payments leaves every transaction balanced,
every payment's net equal to captured less refunded, and every balance equal to the ledger.
"""

from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.ledger import customer_credit_balance, ledger_verify, merchant_net_volume
from billing.tests.flows import captured, credit_change, paid_with_credits, refunded
from payments import services
from payments.models import Payment
from payments.tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

# Credit balances are the colleague's work in payments; the steps that need them run once
# the service exists.
HAS_CREDITS = hasattr(services, "customer_credit_change")

cents = st.integers(min_value=1, max_value=100_000).map(lambda n: Decimal(n) / 100)
step = st.one_of(
    st.tuples(st.just("pay"), cents),
    st.tuples(st.just("fail"), cents),
    st.tuples(
        st.just("refund"),
        st.integers(min_value=0, max_value=50),  # which payment
        st.one_of(st.none(), cents),  # None: everything left
        st.sampled_from(["succeeded", "succeeded", "failed"]),
    ),
    st.tuples(st.just("announce_again"), st.integers(min_value=0, max_value=50)),
    *(
        [
            st.tuples(st.just("grant"), cents),
            st.tuples(st.just("deduct"), cents),
            st.tuples(st.just("pay_with_credits"), cents),
        ]
        if HAS_CREDITS
        else []
    ),
)


@settings(
    max_examples=25,
    deadline=None,
    # No example database in the working tree: a failure prints its shrunk example, and
    # several people run the suite side by side here.
    database=None,
    # The merchant fixture is shared by the examples on purpose; each example runs in its
    # own savepoint below and is rolled back, so no state leaks from one to the next.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(step, min_size=1, max_size=15))
def test_the_ledger_check_passes_after_any_sequence(merchant, steps):
    with transaction.atomic():
        _run(merchant, steps)
        transaction.set_rollback(True)


def _run(merchant, steps):
    customer = CustomerFactory(merchant=merchant)
    payments: list[Payment] = []
    net = Decimal(0)  # what the merchant should have kept: our own model of it
    balance = Decimal(0)  # the customer's credit, likewise

    for name, *args in steps:
        if name == "pay":
            payments.append(captured(merchant, args[0]))
            net += args[0]
        elif name == "fail":
            failed = services.payment_create(
                merchant=merchant, amount=args[0], currency="RUB", provider="sandbox"
            )
            services.payment_fail(payment_id=failed.pk, code="declined", message="", source="task")
        elif name == "pay_with_credits":
            amount = min(args[0], balance)
            if amount > 0:
                payments.append(paid_with_credits(merchant, customer, amount))
                net += amount
                balance -= amount
        elif name == "grant":
            credit_change(customer, "grant", args[0])
            balance += args[0]
        elif name == "deduct":
            amount = min(args[0], balance)
            if amount > 0:
                credit_change(customer, "deduct", amount)
                balance -= amount
        elif name == "refund" and payments:
            index, amount, status = args
            payment = payments[index % len(payments)]
            payment.refresh_from_db()
            left = services.payment_refundable(payment)
            if left <= 0:
                continue
            refund = refunded(payment, None if amount is None else min(amount, left), status)
            if refund.status == "succeeded":
                net -= refund.amount
                if payment.provider == "credits":
                    balance += refund.amount
        elif name == "announce_again" and payments:
            payment = payments[args[0] % len(payments)]
            payment.refresh_from_db()
            with transaction.atomic():
                services.outcome_announce(payment, "payment.succeeded")

    assert ledger_verify() == []
    assert merchant_net_volume(merchant.pk, "RUB") == net
    assert customer_credit_balance(customer.pk, "RUB") == balance
