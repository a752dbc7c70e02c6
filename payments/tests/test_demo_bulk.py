import json
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.utils import timezone

from billing.ledger import ledger_verify
from billing.models import LedgerTransaction
from conftest import client_for
from payments import demo_bulk, money
from payments.demo_bulk import BULK_MARK, demo_payments_bulk, demo_payments_bulk_count
from payments.ids import ulid_floor
from payments.models import (
    Customer,
    CustomerBalance,
    Merchant,
    Payment,
    PaymentEvent,
    PaymentStatus,
    Refund,
    SandboxPayment,
)
from subscriptions.management.commands.seed_demo import ledger_book_bulk

pytestmark = pytest.mark.django_db

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CAPTURED = {PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}
FINAL = CAPTURED | {PaymentStatus.FAILED, PaymentStatus.CANCELED}


def ulid_ms(object_id: str) -> int:
    """The millisecond a prefixed ULID id (`pay_01…`) was made at."""
    value = 0
    for char in object_id.rsplit("_", 1)[1][:10]:
        value = value * 32 + _CROCKFORD.index(char)
    return value


def micros(moment) -> int:
    return (moment - demo_bulk._EPOCH) // timedelta(microseconds=1)


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def bulk(merchant):
    """Two thousand payments in several batches, booked in the ledger as seed_demo does."""
    calls = []
    started = timezone.now()
    inserted = demo_payments_bulk(
        merchant=merchant,
        count=2000,
        batch_size=700,
        book=ledger_book_bulk,
        progress=lambda done, total: calls.append((done, total)),
    )
    return inserted, calls, started


def test_inserts_the_payments_in_batches_with_progress(merchant, bulk):
    inserted, calls, _ = bulk

    assert inserted == 2000
    assert calls == [(700, 2000), (1400, 2000), (2000, 2000)]
    assert Payment.objects.filter(merchant=merchant).count() == 2000
    assert demo_payments_bulk_count(merchant=merchant) == 2000
    # A plausible mix of everything a list can be filtered by.
    payments = Payment.objects.filter(merchant=merchant)
    statuses = Counter(payments.values_list("status", flat=True))
    assert statuses[PaymentStatus.SUCCEEDED] > 1200
    for status in ["failed", "canceled", "refunded", "partially_refunded"]:
        assert statuses[status] > 10, statuses
    assert set(payments.values_list("provider", flat=True)) == {
        "sandbox",
        "stripe",
        "yookassa",
        "credits",
    }
    currencies = Counter(payments.values_list("currency", flat=True))
    assert set(currencies) == {"RUB", "USD", "EUR"}
    assert currencies["RUB"] > 1500
    # Customers to search by, with emails and external ids, made once.
    customers = Customer.objects.filter(merchant=merchant)
    assert customers.count() == 40
    assert not customers.filter(email="").exists()
    assert customers.filter(external_id__startswith="user-").count() == 40
    assert payments.filter(customer__isnull=False).count() > 1800


def test_every_amount_fits_its_currency_and_the_money_bounds_hold(merchant, bulk):
    refunds = defaultdict(Decimal)
    for payment_id, amount in Refund.objects.filter(status="succeeded").values_list(
        "payment_id", "amount"
    ):
        refunds[payment_id] += amount

    for payment in Payment.objects.filter(merchant=merchant):
        for value in (payment.amount, payment.amount_captured, payment.amount_refunded):
            money.to_minor_units(value, payment.currency)  # raises when it does not fit
        assert payment.amount > 0
        assert 0 <= payment.amount_refunded <= payment.amount_captured <= payment.amount
        if payment.status in CAPTURED:
            assert payment.amount_captured == payment.amount
        else:
            assert payment.amount_captured == 0
        if payment.status == PaymentStatus.REFUNDED:
            assert payment.amount_refunded == payment.amount_captured
        elif payment.status == PaymentStatus.PARTIALLY_REFUNDED:
            assert 0 < payment.amount_refunded < payment.amount_captured
        else:
            assert payment.amount_refunded == 0
        assert refunds[payment.pk] == payment.amount_refunded
        assert (payment.completed_at is not None) == (payment.status in FINAL)
        if payment.status == PaymentStatus.FAILED:
            assert payment.failure_code and payment.failure_message
        if payment.provider == "credits":
            assert payment.customer_id and not payment.card_last4
            assert payment.payment_method_types == ["credits"]
        elif payment.status in CAPTURED:
            assert len(payment.card_last4) == 4 and payment.provider_payment_id
        assert payment.created_at <= payment.updated_at


def test_ids_tell_the_time_they_were_made(merchant, bulk):
    _, _, started = bulk
    rows = list(Payment.objects.filter(merchant=merchant).values_list("id", "created_at"))

    for payment_id, created_at in rows:
        # The id's millisecond is the created time's: list filters on created ranges
        # become id ranges.
        assert ulid_ms(payment_id) == micros(created_at) // 1000
        assert started - timedelta(days=90, minutes=1) <= created_at <= timezone.now()
    by_id = [created for _, created in sorted(rows)]
    assert [micros(c) // 1000 for c in by_id] == sorted(micros(c) // 1000 for c in by_id)
    # What `ulid_floor` (the created_gte filter) does on them.
    middle = sorted(rows)[1000][1]
    assert Payment.objects.filter(
        merchant=merchant, id__gte="pay_" + ulid_floor(middle)
    ).count() == (
        sum(1 for _, created in rows if micros(created) // 1000 >= micros(middle) // 1000)
    )
    for model in (Refund, PaymentEvent, LedgerTransaction):
        for object_id, created_at in model.objects.values_list("id", "created_at")[:500]:
            assert ulid_ms(object_id) == micros(created_at) // 1000


def test_the_ledger_proves_them(merchant, bulk):
    assert ledger_verify() == []
    captured = Payment.objects.filter(merchant=merchant, status__in=CAPTURED).count()
    assert LedgerTransaction.objects.filter(kind="payment.succeeded").count() == captured
    assert LedgerTransaction.objects.filter(kind="refund.succeeded").count() == (
        Refund.objects.count()
    )
    # Credits were granted before they were spent, and returned by refunds.
    assert CustomerBalance.objects.exists()
    returned = Refund.objects.filter(provider="credits").aggregate(total=Sum("amount"))["total"]
    assert CustomerBalance.objects.aggregate(total=Sum("amount"))["total"] == returned


def test_the_sandbox_books_agree_with_ours(merchant, bulk):
    ours = Payment.objects.filter(merchant=merchant, provider="sandbox")
    theirs = {p.reference: p for p in SandboxPayment.objects.all()}

    assert len(theirs) == ours.count() > 100
    for payment in ours:
        remote = theirs[payment.pk]
        assert remote.id == payment.provider_payment_id
        assert (remote.amount, remote.currency) == (payment.amount, payment.currency)
        assert remote.amount_captured == payment.amount_captured
        assert remote.amount_refunded == payment.amount_refunded


def test_failed_orders_are_retried_under_the_same_order_id(merchant, bulk):
    shared = Counter(Payment.objects.filter(merchant=merchant).values_list("order_id", flat=True))
    retried = [order for order, n in shared.items() if n > 1]

    assert retried
    for order_id in retried:
        statuses = list(
            Payment.objects.filter(order_id=order_id)
            .order_by("id")
            .values_list("status", flat=True)
        )
        assert all(status == PaymentStatus.FAILED for status in statuses[:-1])


def test_a_second_run_adds_more_without_clashes(merchant):
    demo_payments_bulk(merchant=merchant, count=300, book=ledger_book_bulk)
    demo_payments_bulk(merchant=merchant, count=300, book=ledger_book_bulk)

    assert demo_payments_bulk_count(merchant=merchant) == 600
    assert Customer.objects.filter(merchant=merchant).count() == 20  # reused
    assert len(set(Payment.objects.values_list("order_id", flat=True))) > 500
    assert ledger_verify() == []


def test_the_executemany_path_used_off_postgresql(merchant, monkeypatch):
    # SQLite (the embedded default) has no COPY: rows go through executemany, keeping
    # the given times (bulk_create would overwrite every auto_now_add with the present).
    monkeypatch.setattr(demo_bulk, "_copy_supported", lambda: False)

    assert demo_payments_bulk(merchant=merchant, count=300, book=ledger_book_bulk) == 300

    payment = Payment.objects.filter(merchant=merchant).order_by("id").first()
    assert ulid_ms(payment.pk) == micros(payment.created_at) // 1000
    assert payment.metadata == {"seed": BULK_MARK}
    assert isinstance(payment.payment_method_types, list)
    assert ledger_verify() == []


def test_seed_demo_payments_prints_a_summary_and_the_api_lists_them():
    out, err = run("seed_demo", "--payments", "500")

    assert "Bulk demo payments: 500 added" in out
    assert "500 in all" in out
    assert "] 500/500" in err  # the progress bar, on stderr
    # A rerun tops up to the number asked for: nothing is missing, nothing is added.
    data = json.loads(run("seed_demo", "--payments", "500", "--json")[0])
    assert data["bulk_payments"]["added"] == 0
    assert data["bulk_payments"]["total"] == 500
    api = client_for(data["secret_key"])
    listed = api.get("/api/v1/payments?limit=100").json()["results"]
    assert len(listed) == 100
    # All bulk but the demo's own credits payment, which is newer than any of them.
    assert sum(p["metadata"] == {"seed": BULK_MARK} for p in listed) >= 99
    failed = api.get("/api/v1/payments?status=failed&limit=100").json()["results"]
    assert failed and {p["status"] for p in failed} == {"failed"}
    assert ledger_verify() == []


def test_seed_demo_json_has_no_bulk_part_without_payments():
    data = json.loads(run("seed_demo", "--json")[0])

    assert set(data) == {
        "merchant",
        "secret_key",
        "publishable_key",
        "staff_username",
        "staff_password",
        "role_users",
    }
    assert demo_payments_bulk_count(merchant=Merchant.objects.get(pk=data["merchant"])) == 0


def test_seed_demo_refuses_a_negative_number():
    with pytest.raises(CommandError, match="--payments must be 0 or more"):
        run("seed_demo", "--payments", "-1")
    assert not Merchant.objects.exists()


def test_every_payment_can_go_through_the_sandbox_and_reconciles_clean(merchant):
    inserted = demo_payments_bulk(
        merchant=merchant, count=600, batch_size=250, book=ledger_book_bulk, provider="sandbox"
    )

    assert inserted == 600
    assert set(Payment.objects.filter(merchant=merchant).values_list("provider", flat=True)) == {
        "sandbox"
    }
    assert SandboxPayment.objects.count() == 600
    today = timezone.now().date()
    since, until = str(today - timedelta(days=100)), str(today + timedelta(days=1))
    out, _ = run("reconcile", "--provider", "sandbox", "--since", since, "--until", until)
    # Every payment and refund the seed made is in the sandbox's books, and agrees.
    refunds = Refund.objects.filter(payment__merchant=merchant).count()
    assert f"with {600 + refunds:,} of our payments and refunds; 0 mismatches." in out, out


def test_only_a_provider_of_every_currency_can_be_forced(merchant):
    assert demo_bulk.BULK_PROVIDERS == ["sandbox"]
    with pytest.raises(ValueError, match="stripe"):
        demo_payments_bulk(merchant=merchant, count=1, provider="stripe")
    with pytest.raises(CommandError):
        run("seed_demo", "--payments", "1", "--provider", "stripe")
