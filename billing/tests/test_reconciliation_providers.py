"""
Reconciliation against Stripe and YooKassa, through their real SDKs and the local fakes:
the list APIs' wire format and paging (more records than one page), and the mismatches a
run finds when the provider's records are changed under us.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
import stripe
from django.contrib.auth import get_user_model
from django.utils import timezone

from billing import reconciliation
from billing.ledger import ledger_verify
from billing.models import ReconciliationMismatch
from billing.tests.test_reconciliation import ids_follow_the_clock
from payments import services
from payments.models import Payment
from payments.providers.stripe import StripeProvider
from payments.providers.yookassa import YooKassaProvider
from payments.tests.fakes.stripe_server import FakeStripe
from payments.tests.fakes.yookassa_server import FakeYooKassa

pytestmark = pytest.mark.django_db

__all__ = ["ids_follow_the_clock"]  # an autouse fixture, shared

Kind = ReconciliationMismatch.Kind
STRIPE_KEY = "sk_test_51FakeKeyForReconciliation000000000000"


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("fiona", password="x", is_staff=True)


def window():
    now = timezone.now()
    return now - timedelta(hours=1), now + timedelta(minutes=1)


def reconcile(provider: str):
    since, until = window()
    run = reconciliation.reconciliation_create(provider=provider, since=since, until=until)
    return reconciliation.reconciliation_execute(run_id=run.pk)


def found(run) -> set[tuple[str, str]]:
    return {(m.kind, m.refund_id or m.payment_id) for m in run.mismatches.all()}


# --- Stripe ---------------------------------------------------------------------------------


@pytest.fixture
def fake_stripe(settings, monkeypatch):
    fake = FakeStripe(secret_key=STRIPE_KEY).start()
    settings.STRIPE_SECRET_KEY = STRIPE_KEY
    settings.STRIPE_API_BASE = fake.url
    settings.PROVIDER_TIMEOUT_SECONDS = 1
    monkeypatch.setattr(stripe.HTTPClient, "INITIAL_DELAY", 0.01)
    # Pages of two, so that five payments take three pages.
    monkeypatch.setattr(StripeProvider, "list_page_size", 2)
    yield fake
    fake.stop()


def stripe_paid(fake, merchant, amount="599.00") -> Payment:
    payment = services.payment_create(
        merchant=merchant, amount=amount, currency="RUB", provider="stripe"
    )
    payment = services.payment_checkout_start(payment_id=payment.pk)
    intent_id = fake.complete_session(payment.provider_checkout_id)["payment_intent"]
    return services.payment_sync_from_provider(
        provider="stripe",
        remote=StripeProvider().payment_retrieve(intent_id),
        source="provider",
    )


def test_stripe_payment_intents_are_listed_page_by_page(fake_stripe, merchant):
    payments = [stripe_paid(fake_stripe, merchant) for _ in range(5)]
    since, until = window()

    listed = list(StripeProvider().payments_list(created_gte=since, created_lt=until))

    assert sorted(p.reference for p in listed) == sorted(p.pk for p in payments)
    assert {p.status for p in listed} == {"succeeded"}
    assert all(p.created_at is not None for p in listed)
    pages = fake_stripe.requests_to("GET", "/v1/payment_intents")
    assert len(pages) == 3
    first, second, third = (page.query for page in pages)
    assert first == {
        "created": {"gte": str(int(since.timestamp())), "lt": str(int(until.timestamp()) + 1)},
        "limit": "2",
    }
    # Stripe lists newest first; each page starts after the last id of the one before.
    newest_first = [p.provider_payment_id for p in reversed(payments)]
    assert second["starting_after"] == newest_first[1]
    assert third["starting_after"] == newest_first[3]
    assert [p.provider_payment_id for p in listed] == newest_first


def test_stripe_refunds_are_listed_with_our_reference(fake_stripe, merchant):
    payment = stripe_paid(fake_stripe, merchant)
    refunds = []
    for amount in ("100.00", "50.00", "25.00"):
        refund = services.refund_create(payment=payment, amount=amount, source="api")
        services.refund_dispatch_start(refund_id=refund.pk)
        refunds.append(refund)
    since, until = window()

    listed = list(StripeProvider().refunds_list(created_gte=since, created_lt=until))

    assert sorted(r.reference for r in listed) == sorted(r.pk for r in refunds)
    assert {r.amount for r in listed} == {Decimal("100.00"), Decimal("50.00"), Decimal("25.00")}
    assert len(fake_stripe.requests_to("GET", "/v1/refunds")) == 2


def test_a_run_against_stripe_finds_what_changed_there(fake_stripe, merchant, staff):
    kept = [stripe_paid(fake_stripe, merchant) for _ in range(2)]
    canceled, changed, vanished = (stripe_paid(fake_stripe, merchant) for _ in range(3))
    refunded = kept[0]
    refund = services.refund_create(payment=refunded, amount="100.00", source="api")
    services.refund_dispatch_start(refund_id=refund.pk)
    refund.refresh_from_db()
    fake_stripe.intents[canceled.provider_payment_id]["status"] = "canceled"
    fake_stripe.intents[changed.provider_payment_id]["amount_received"] = 50000
    del fake_stripe.intents[vanished.provider_payment_id]
    fake_stripe.fail_refund(refund.provider_refund_id)

    run = reconcile("stripe")

    assert (run.status, run.error) == ("succeeded", "")
    assert found(run) == {
        (Kind.STATUS_DIFFERS, canceled.pk),
        (Kind.AMOUNT_DIFFERS, changed.pk),
        (Kind.MISSING_AT_PROVIDER, vanished.pk),
        (Kind.REFUND_DIFFERS, refund.pk),
    }
    (amount,) = run.mismatches.filter(kind=Kind.AMOUNT_DIFFERS)
    assert "captured 599.00 RUB here, 500.00 RUB at the provider" in amount.summary

    # Taking Stripe's state asks Stripe again, then corrects through the service.
    for mismatch in run.mismatches.exclude(kind=Kind.REFUND_DIFFERS):
        reconciliation.mismatch_fix_from_provider(mismatch=mismatch, user=staff)
    statuses = dict(Payment.objects.values_list("pk", "status"))
    assert (statuses[canceled.pk], statuses[changed.pk], statuses[vanished.pk]) == (
        "canceled",
        "succeeded",
        "failed",
    )
    assert Payment.objects.get(pk=changed.pk).amount_captured == Decimal("500.00")
    assert ledger_verify() == []
    assert found(reconcile("stripe")) == {(Kind.REFUND_DIFFERS, refund.pk)}


def test_a_stripe_outage_fails_the_run_with_its_reason(fake_stripe, merchant):
    stripe_paid(fake_stripe, merchant)
    fake_stripe.respond_next(500, times=3, path="/v1/payment_intents")

    run = reconcile("stripe")

    assert run.status == "failed"
    assert run.error.startswith("The provider failed:")
    assert not run.mismatches.exists()


# --- YooKassa -------------------------------------------------------------------------------


@pytest.fixture
def fake_yookassa(settings, monkeypatch):
    with FakeYooKassa() as fake:
        settings.YOOKASSA_SHOP_ID = fake.shop_id
        settings.YOOKASSA_SECRET_KEY = fake.secret_key
        settings.YOOKASSA_API_URL = fake.api_url
        settings.PROVIDER_TIMEOUT_SECONDS = 1
        monkeypatch.setattr(YooKassaProvider, "list_page_size", 2)
        yield fake


def yookassa_paid(fake, merchant, amount="599.00") -> Payment:
    payment = services.payment_create(
        merchant=merchant, amount=amount, currency="RUB", provider="yookassa"
    )
    payment = services.payment_checkout_start(payment_id=payment.pk)
    fake.pay(payment.provider_payment_id)
    return services.payment_sync_from_provider(
        provider="yookassa",
        remote=YooKassaProvider().payment_retrieve(payment.provider_payment_id),
        source="provider",
    )


def test_yookassa_payments_are_listed_page_by_page(fake_yookassa, merchant):
    payments = [yookassa_paid(fake_yookassa, merchant) for _ in range(5)]
    since, until = window()

    listed = list(YooKassaProvider().payments_list(created_gte=since, created_lt=until))

    assert sorted(p.reference for p in listed) == sorted(p.pk for p in payments)
    assert all(p.created_at is not None and p.status == "succeeded" for p in listed)
    pages = fake_yookassa.requests_to("GET", "/v3/payments")
    assert len(pages) == 3
    first = pages[0].query
    assert first == {
        "created_at.gte": since.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "created_at.lt": until.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "limit": "2",
    }
    assert "cursor" in pages[1].query and "cursor" in pages[2].query
    assert pages[1].query["cursor"] != pages[2].query["cursor"]
    assert pages[0].header("authorization").startswith("Basic ")


def test_a_run_against_yookassa_finds_what_changed_there(fake_yookassa, merchant, staff):
    kept = [yookassa_paid(fake_yookassa, merchant) for _ in range(2)]
    changed, vanished = (yookassa_paid(fake_yookassa, merchant) for _ in range(2))
    refund = services.refund_create(payment=kept[0], amount="100.00", source="api")
    services.refund_dispatch_start(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == "succeeded"
    fake_yookassa.payments[changed.provider_payment_id]["amount"]["value"] = "500.00"
    del fake_yookassa.payments[vanished.provider_payment_id]
    fake_yookassa.refunds[refund.provider_refund_id]["amount"]["value"] = "90.00"

    run = reconcile("yookassa")

    assert (run.status, run.error) == ("succeeded", "")
    assert found(run) == {
        (Kind.AMOUNT_DIFFERS, changed.pk),
        (Kind.MISSING_AT_PROVIDER, vanished.pk),
        (Kind.REFUND_DIFFERS, refund.pk),
    }
    assert len(fake_yookassa.requests_to("GET", "/v3/refunds")) == 1

    for mismatch in run.mismatches.exclude(kind=Kind.REFUND_DIFFERS):
        reconciliation.mismatch_fix_from_provider(mismatch=mismatch, user=staff)
    assert Payment.objects.get(pk=changed.pk).amount_captured == Decimal("500.00")
    assert Payment.objects.get(pk=vanished.pk).status == "failed"
    assert ledger_verify() == []
    assert found(reconcile("yookassa")) == {(Kind.REFUND_DIFFERS, refund.pk)}


def test_yookassa_list_limits_are_its_own(fake_yookassa):
    from payments.providers.base import ProviderDeclined

    since, until = window()
    provider = YooKassaProvider()
    provider.list_page_size = 101

    with pytest.raises(ProviderDeclined, match="limit"):
        list(provider.payments_list(created_gte=since, created_lt=until))
