"""Celery tasks of the payments app: checkout dispatch, the sweeps, sandbox webhook delivery."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from payments import services
from payments.models import (
    IdempotencyKey,
    Payment,
    PaymentEvent,
    SandboxEvent,
    SandboxPayment,
)
from payments.providers.base import ProviderDeclined, ProviderTransientError
from payments.providers.sandbox import SandboxProvider
from payments.sandbox import gateway
from payments.tasks import (
    idempotency_keys_purge,
    payment_checkout_dispatch,
    payments_sweep_awaiting_checkout,
    sandbox_sweep_undelivered_events,
)
from webhooks.models import InboundWebhook

pytestmark = pytest.mark.django_db

CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens there: a web process that is down


def _payment(merchant, **kwargs) -> Payment:
    """A pending payment as the API stores it; its checkout task has not run (no commit)."""
    return services.payment_create(merchant=merchant, amount="599.00", currency="RUB", **kwargs)


def _backdate(payment: Payment, *, minutes: float, dispatched: bool = True) -> None:
    at = timezone.now() - timedelta(minutes=minutes)
    changes = {"created_at": at}
    if dispatched:
        changes["last_dispatched_at"] = at
    Payment.objects.filter(pk=payment.pk).update(**changes)


def _timeline(payment: Payment) -> list[str]:
    return list(PaymentEvent.objects.filter(payment=payment).values_list("type", flat=True))


@pytest.fixture
def provider_down(monkeypatch):
    def down(self, request, *, idempotency_key):
        raise ProviderTransientError("down")

    monkeypatch.setattr(SandboxProvider, "checkout_create", down)
    return monkeypatch


# --- payment_checkout_start / payment_checkout_dispatch ---------------------------------


def test_checkout_start_opens_one_sandbox_payment_and_stores_its_checkout(merchant, settings):
    payment = _payment(merchant)

    payment = services.payment_checkout_start(payment_id=payment.pk)

    sandbox_payment = SandboxPayment.objects.get()
    assert sandbox_payment.reference == payment.pk
    assert sandbox_payment.amount == Decimal("599.00")
    assert sandbox_payment.currency == "RUB"
    assert sandbox_payment.manual_capture is False
    assert sandbox_payment.return_url == f"{settings.PUBLIC_BASE_URL}/pay/{payment.pk}?returned=1"
    payment.refresh_from_db()
    assert payment.status == "pending"
    assert payment.provider_payment_id == sandbox_payment.id
    assert payment.provider_checkout_id == sandbox_payment.id
    assert payment.provider_checkout_url == (
        f"{settings.PUBLIC_BASE_URL}/sandbox/checkout/{sandbox_payment.id}"
    )
    assert payment.dispatch_attempts == 1
    assert payment.last_dispatched_at is not None
    event = PaymentEvent.objects.get(payment=payment, type="checkout_created")
    assert event.source == PaymentEvent.Source.TASK
    assert event.actor == "payment_checkout_dispatch"
    assert event.data == {"provider": "sandbox", "provider_payment_id": sandbox_payment.id}


def test_checkout_start_again_changes_nothing(merchant):
    payment = _payment(merchant)
    first = services.payment_checkout_start(payment_id=payment.pk)

    again = services.payment_checkout_start(payment_id=payment.pk)

    assert again.provider_checkout_url == first.provider_checkout_url
    assert SandboxPayment.objects.count() == 1
    payment.refresh_from_db()
    assert payment.dispatch_attempts == 1
    assert payment.provider_payment_id == first.provider_payment_id
    assert _timeline(payment) == ["created", "checkout_created"]


def test_manual_capture_payment_opens_a_manual_capture_sandbox_payment(merchant):
    payment = _payment(merchant, capture=False)

    services.payment_checkout_start(payment_id=payment.pk)

    assert SandboxPayment.objects.get(reference=payment.pk).manual_capture is True


def test_creating_a_payment_dispatches_its_checkout_once_committed(
    merchant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        payment = _payment(merchant)

    payment.refresh_from_db()
    assert payment.provider_checkout_url
    assert SandboxPayment.objects.filter(reference=payment.pk).count() == 1


def test_transient_provider_error_propagates_and_leaves_the_payment_pending(
    merchant, provider_down
):
    payment = _payment(merchant)

    with pytest.raises(ProviderTransientError):
        services.payment_checkout_start(payment_id=payment.pk)

    payment.refresh_from_db()
    assert payment.status == "pending"
    assert payment.provider_checkout_url == ""
    assert payment.dispatch_attempts == 1
    assert payment.last_dispatched_at is not None
    assert _timeline(payment) == ["created"]
    assert not SandboxPayment.objects.exists()


def test_eager_dispatch_task_swallows_a_transient_error_and_the_sweep_retries_later(
    merchant, provider_down
):
    payment = _payment(merchant)

    result = payment_checkout_dispatch.delay(payment.pk)

    assert result.state == "SUCCESS"  # no retry loop inside the request in eager mode
    payment.refresh_from_db()
    assert (payment.status, payment.dispatch_attempts) == ("pending", 1)

    # Created a while ago but dispatched just now: too early to try again.
    _backdate(payment, minutes=5, dispatched=False)
    assert payments_sweep_awaiting_checkout() == {"redispatched": 0, "failed": 0}

    # The last try is more than two minutes old and the provider is back.
    _backdate(payment, minutes=5)
    provider_down.undo()
    assert payments_sweep_awaiting_checkout() == {"redispatched": 1, "failed": 0}

    payment.refresh_from_db()
    assert payment.status == "pending"
    assert payment.provider_checkout_url
    assert payment.dispatch_attempts == 2
    assert SandboxPayment.objects.filter(reference=payment.pk).count() == 1


def test_sweep_dispatches_a_payment_whose_task_never_ran(merchant):
    payment = _payment(merchant)
    _backdate(payment, minutes=5, dispatched=False)  # last_dispatched_at stays empty

    swept = payments_sweep_awaiting_checkout()

    assert swept == {"redispatched": 1, "failed": 0}
    payment.refresh_from_db()
    assert payment.provider_checkout_url
    assert payment.dispatch_attempts == 1


def test_sweep_leaves_a_young_payment_to_its_own_task(merchant):
    payment = _payment(merchant)  # created moments ago, never dispatched

    swept = payments_sweep_awaiting_checkout()

    assert swept == {"redispatched": 0, "failed": 0}
    payment.refresh_from_db()
    assert payment.dispatch_attempts == 0


def test_permanent_provider_error_fails_the_payment(merchant, monkeypatch):
    def refuse(self, request, *, idempotency_key):
        raise ProviderDeclined("bad request", code="invalid_request")

    monkeypatch.setattr(SandboxProvider, "checkout_create", refuse)
    payment = _payment(merchant)

    result = services.payment_checkout_start(payment_id=payment.pk)

    assert result.status == "failed"
    payment.refresh_from_db()
    assert payment.status == "failed"
    assert payment.failure_code == "invalid_request"
    assert payment.failure_message == "bad request"
    assert payment.completed_at is not None
    assert payment.provider_checkout_url == ""
    failed = PaymentEvent.objects.get(payment=payment, type="failed")
    assert failed.source == PaymentEvent.Source.TASK
    assert failed.data == {"failure_code": "invalid_request"}


def test_sweep_fails_payments_without_a_checkout_after_the_deadline_and_nothing_else(
    merchant, settings
):
    too_late = settings.PAYMENT_CHECKOUT_DEADLINE_MINUTES + 1
    hopeless = _payment(merchant)
    with_checkout = services.payment_checkout_start(payment_id=_payment(merchant).pk)
    already_failed = services.payment_fail(
        payment_id=_payment(merchant).pk,
        code="card_declined",
        message="Your card was declined.",
        source=PaymentEvent.Source.PROVIDER,
    )
    canceled = services.payment_cancel(payment=_payment(merchant), source=PaymentEvent.Source.API)
    for payment in (hopeless, with_checkout, already_failed, canceled):
        _backdate(payment, minutes=too_late)

    swept = payments_sweep_awaiting_checkout()

    assert swept == {"redispatched": 0, "failed": 1}
    hopeless.refresh_from_db()
    assert hopeless.status == "failed"
    assert hopeless.failure_code == "provider_unavailable"
    assert PaymentEvent.objects.get(payment=hopeless, type="failed").actor == (
        "payments_sweep_awaiting_checkout"
    )
    untouched = {
        p.pk: (p.status, p.failure_code, p.updated_at)
        for p in (with_checkout, already_failed, canceled)
    }
    for payment in Payment.objects.filter(pk__in=untouched):
        assert (payment.status, payment.failure_code, payment.updated_at) == untouched[payment.pk]
    assert SandboxPayment.objects.count() == 1  # nothing was re-dispatched


# --- idempotency_keys_purge ---------------------------------------------------------------


def _idempotency_key(merchant, key: str, *, hours_old: float) -> IdempotencyKey:
    row = IdempotencyKey.objects.create(
        merchant=merchant,
        key=key,
        request_method="POST",
        request_path="/api/v1/payments",
        request_fingerprint="0" * 64,
        response_status=201,
        response_body=b"{}",
        response_content_type="application/json",
    )
    IdempotencyKey.objects.filter(pk=row.pk).update(
        created_at=timezone.now() - timedelta(hours=hours_old)
    )
    return row


def test_purge_deletes_idempotency_keys_past_their_ttl_only(merchant, settings):
    ttl = settings.IDEMPOTENCY_KEY_TTL_HOURS
    _idempotency_key(merchant, "expired", hours_old=ttl + 1)
    _idempotency_key(merchant, "almost", hours_old=ttl - 1)
    _idempotency_key(merchant, "fresh", hours_old=0)

    deleted = idempotency_keys_purge()

    assert deleted == 1
    assert sorted(IdempotencyKey.objects.values_list("key", flat=True)) == ["almost", "fresh"]


# --- Sandbox webhook delivery -------------------------------------------------------------


def _sandbox_event(*, minutes_old: float, **fields) -> SandboxEvent:
    event = SandboxEvent.objects.create(
        type="payment.succeeded", payload={"id": "x", "type": "payment.succeeded"}, **fields
    )
    SandboxEvent.objects.filter(pk=event.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes_old)
    )
    return event


def test_event_send_to_a_closed_port_records_the_failed_attempt(settings):
    settings.SANDBOX_WEBHOOK_URL = ""
    settings.PUBLIC_BASE_URL = CLOSED_PORT
    event = _sandbox_event(minutes_old=0)

    delivered = gateway.event_send(event.pk)

    assert delivered is False
    event.refresh_from_db()
    assert event.delivered_at is None
    assert event.attempts == 1
    assert event.last_error.startswith("ConnectionError")


def test_sandbox_sweep_resends_only_old_undelivered_events(settings):
    settings.SANDBOX_WEBHOOK_URL = ""
    settings.PUBLIC_BASE_URL = CLOSED_PORT
    stranded = _sandbox_event(minutes_old=2)
    fresh = _sandbox_event(minutes_old=0)
    delivered = _sandbox_event(minutes_old=2, delivered_at=timezone.now())
    given_up = _sandbox_event(minutes_old=2, attempts=50)

    swept = sandbox_sweep_undelivered_events()

    assert swept == 1
    attempts = dict(SandboxEvent.objects.values_list("pk", "attempts"))
    assert attempts == {stranded.pk: 1, fresh.pk: 0, delivered.pk: 0, given_up.pk: 50}


@pytest.mark.django_db(transaction=True)
def test_sandbox_sweep_delivers_an_event_missed_while_we_were_down(merchant, settings, live_server):
    settings.SANDBOX_WEBHOOK_URL = ""
    settings.PUBLIC_BASE_URL = CLOSED_PORT
    payment = _payment(merchant)  # committed: its checkout task ran
    payment.refresh_from_db()
    # The buyer pays while our web process is down: the sandbox's webhook cannot get through.
    gateway.checkout_submit(payment.provider_payment_id, "4242 4242 4242 4242")
    event = SandboxEvent.objects.get()
    assert (event.type, event.delivered_at, event.attempts) == ("payment.succeeded", None, 1)
    payment.refresh_from_db()
    assert payment.status == "pending"
    SandboxEvent.objects.filter(pk=event.pk).update(
        created_at=timezone.now() - timedelta(minutes=2)
    )
    settings.PUBLIC_BASE_URL = live_server.url

    swept = sandbox_sweep_undelivered_events()

    assert swept == 1
    event.refresh_from_db()
    assert event.delivered_at is not None
    assert event.attempts == 2
    assert event.last_error == ""
    webhook = InboundWebhook.objects.get(provider="sandbox", event_id=event.pk)
    assert webhook.status == InboundWebhook.Status.PROCESSED
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert payment.amount_captured == Decimal("599.00")
    assert (payment.card_brand, payment.card_last4) == ("visa", "4242")


def test_a_checkout_made_after_the_payment_was_canceled_is_closed_at_the_provider(
    merchant, monkeypatch
):
    """The buyer can never pay a checkout for a payment we already canceled."""
    payment = services.payment_create(merchant=merchant, amount="599.00", currency="RUB")
    real_open = gateway.payment_open

    def open_then_cancel_ours(**kwargs):
        opened = real_open(**kwargs)
        services.payment_cancel(payment=payment, source="api")  # the merchant cancels meanwhile
        return opened

    monkeypatch.setattr(gateway, "payment_open", open_then_cancel_ours)

    services.payment_checkout_start(payment_id=payment.pk)

    payment.refresh_from_db()
    assert payment.status == "canceled"
    assert payment.provider_checkout_url == ""
    assert SandboxPayment.objects.get(reference=payment.pk).status == "canceled"


def test_canceling_a_pending_payment_closes_its_open_checkout(merchant):
    payment = services.payment_create(merchant=merchant, amount="599.00", currency="RUB")
    payment = services.payment_checkout_start(payment_id=payment.pk)

    services.payment_cancel(payment=payment, source="api")

    remote = SandboxPayment.objects.get(reference=payment.pk)
    assert remote.status == "canceled"
    gateway.checkout_submit(remote.pk, "4242424242424242")
    remote.refresh_from_db()
    assert remote.status == "canceled"  # a stale tab cannot pay it any more
