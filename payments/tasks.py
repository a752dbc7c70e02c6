"""Celery tasks of the payments app: thin, keyed by ids, idempotent, safe to run twice."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from payments import services
from payments.errors import PaymentError
from payments.models import (
    IdempotencyKey,
    Payment,
    PaymentEvent,
    PaymentStatus,
    Refund,
    RefundStatus,
    SandboxEvent,
)
from payments.providers.base import ProviderTransientError
from payments.sandbox import gateway

logger = logging.getLogger(__name__)

# Seconds before retry n (0-based): about 10 minutes in all, then the sweep takes over.
RETRY_BACKOFF = [5, 15, 30, 60, 120, 300]


def _countdown(retries: int) -> int:
    return RETRY_BACKOFF[min(retries, len(RETRY_BACKOFF) - 1)]


def _call_provider_or_retry(task, call, object_id: str) -> None:
    """Run a provider call; on a transient failure retry with backoff (the sweeps follow)."""
    try:
        call(object_id)
    except ProviderTransientError as exc:
        logger.warning("%s for %s failed for now: %s", task.name, object_id, exc.message)
        if task.request.is_eager:
            return  # in-process mode: no retry loop inside a request; the sweep retries
        raise task.retry(exc=exc, countdown=_countdown(task.request.retries)) from None


@shared_task(bind=True, acks_late=True, max_retries=len(RETRY_BACKOFF))
def payment_checkout_dispatch(self, payment_id: str) -> None:
    _call_provider_or_retry(
        self, lambda pk: services.payment_checkout_start(payment_id=pk), payment_id
    )


@shared_task(bind=True, acks_late=True, max_retries=len(RETRY_BACKOFF))
def payment_charge_dispatch(self, payment_id: str) -> None:
    _call_provider_or_retry(
        self, lambda pk: services.payment_charge_start(payment_id=pk), payment_id
    )


@shared_task(bind=True, acks_late=True, max_retries=12)
def sandbox_event_send(self, event_id: str) -> None:
    if not gateway.event_send(event_id) and not self.request.is_eager:
        raise self.retry(countdown=_countdown(self.request.retries))


@shared_task(acks_late=True)
def payments_sweep_awaiting_checkout() -> dict:
    """
    Re-dispatch pending payments whose provider call was lost (a checkout to open, or an
    off-session charge to make); fail the hopeless ones. An off-session charge the
    provider has answered (it has the provider's id) waits for the provider instead.
    """
    now = timezone.now()
    deadline = now - timedelta(minutes=settings.PAYMENT_CHECKOUT_DEADLINE_MINUTES)
    waiting = Payment.objects.filter(
        status=PaymentStatus.PENDING, provider_checkout_url="", provider_payment_id=""
    )
    expired = 0
    for payment_id in waiting.filter(created_at__lt=deadline).values_list("pk", flat=True)[:500]:
        services.payment_fail(
            payment_id=payment_id,
            code="provider_unavailable",
            message="The provider did not open a checkout in time.",
            source=PaymentEvent.Source.TASK,
            actor="payments_sweep_awaiting_checkout",
        )
        expired += 1
    stale = now - timedelta(minutes=2)
    redispatched = 0
    for payment_id, off_session in (
        waiting.filter(created_at__gte=deadline, created_at__lt=stale)
        .exclude(last_dispatched_at__gte=stale)
        .values_list("pk", "off_session")[:500]
    ):
        task = payment_charge_dispatch if off_session else payment_checkout_dispatch
        task.delay(payment_id)
        redispatched += 1
    return {"redispatched": redispatched, "failed": expired}


@shared_task(acks_late=True)
def sandbox_sweep_undelivered_events() -> int:
    cutoff = timezone.now() - timedelta(minutes=1)
    ids = list(
        SandboxEvent.objects.filter(
            delivered_at__isnull=True, created_at__lt=cutoff, attempts__lt=50
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:500]
    )
    for event_id in ids:
        sandbox_event_send.delay(event_id)
    return len(ids)


@shared_task(acks_late=True)
def idempotency_keys_purge() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted


@shared_task(bind=True, acks_late=True, max_retries=len(RETRY_BACKOFF))
def refund_dispatch(self, refund_id: str) -> None:
    _call_provider_or_retry(
        self, lambda pk: services.refund_dispatch_start(refund_id=pk), refund_id
    )


@shared_task(acks_late=True)
def refunds_sweep_awaiting_provider() -> int:
    """Re-dispatch refunds the provider has not heard of yet (their task was lost)."""
    stale = timezone.now() - timedelta(minutes=2)
    ids = list(
        Refund.objects.filter(
            status=RefundStatus.PENDING, provider_refund_id="", created_at__lt=stale
        )
        .exclude(last_dispatched_at__gte=stale)
        .values_list("pk", flat=True)[:500]
    )
    for refund_id in ids:
        refund_dispatch.delay(refund_id)
    return len(ids)


@shared_task(acks_late=True)
def payments_expire_pending(hours: int | None = None) -> dict:
    """
    Cancel payments nobody paid within `hours` (PAYMENT_PENDING_EXPIRY_HOURS): their
    checkout is closed at the provider, so a stale pay link can no longer take money. Off-
    session charges the provider is still deciding are left to it.
    """
    hours = settings.PAYMENT_PENDING_EXPIRY_HOURS if hours is None else hours
    cutoff = timezone.now() - timedelta(hours=hours)
    stale = Payment.objects.filter(
        status=PaymentStatus.PENDING, off_session=False, created_at__lt=cutoff
    ).values_list("pk", flat=True)[:1000]
    expired = failed = 0
    for payment_id in stale:
        try:
            services.payment_cancel(
                payment=Payment.objects.get(pk=payment_id),
                source=PaymentEvent.Source.TASK,
                actor="payments_expire_pending",
            )
            expired += 1
        except PaymentError as exc:  # the provider refused or is down: next run
            logger.warning("Payment %s not expired: %s", payment_id, exc.message)
            failed += 1
    return {"expired": expired, "failed": failed}
