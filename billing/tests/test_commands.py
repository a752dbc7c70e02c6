"""`manage.py ledger_check`: quiet proof on sound books, loud failure on a corrupted entry."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from billing.management.commands.ledger_check import Command
from billing.models import LedgerEntry
from billing.tests.flows import captured, refunded
from payments.demo import demo_seed

pytestmark = pytest.mark.django_db


def test_ledger_check_passes_on_the_demo_data():
    demo_seed()  # a credit grant, a payment with credits, a partial refund
    out = StringIO()

    call_command("ledger_check", stdout=out)

    assert out.getvalue().strip() == "Ledger OK: 3 transactions, 6 entries, 1 payments checked"


def test_ledger_check_fails_loudly_on_a_hand_corrupted_entry(merchant):
    payment = captured(merchant, "599.00")
    refunded(payment, "100.00")
    call_command("ledger_check", stdout=StringIO())
    sales = LedgerEntry.objects.filter(account="sales", transaction__kind="payment.succeeded").get()
    # Behind the models' back, as a bad migration or a hand edit in psql would.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billing_ledgerentry SET amount = amount - 1 WHERE id = %s", [sales.pk]
        )
    err = StringIO()

    with pytest.raises(CommandError, match=r"Ledger check FAILED: 2 problems"):
        call_command("ledger_check", stdout=StringIO(), stderr=err)

    problems = err.getvalue()
    assert f"Transaction {sales.transaction_id} does not balance in RUB" in problems
    assert f"Payment {payment.pk} (partially_refunded): ledger net 500.0000 RUB" in problems


def test_a_failed_check_exits_non_zero(merchant):
    captured(merchant, "10.00")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE billing_ledgerentry SET amount = 0 WHERE account = 'sales'")

    with pytest.raises(SystemExit) as exited:
        Command().run_from_argv(["manage.py", "ledger_check"])

    assert exited.value.code != 0
