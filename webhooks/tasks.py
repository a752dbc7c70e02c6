import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from webhooks import callbacks, services
from webhooks.models import InboundWebhook

logger = logging.getLogger(__name__)

RETRY_BACKOFF = [10, 60, 300]


@shared_task(bind=True, acks_late=True, max_retries=len(RETRY_BACKOFF))
def inbound_webhook_process(self, webhook_id: str) -> None:
    try:
        services.webhook_process(webhook_id=webhook_id)
    except Exception as exc:
        if self.request.is_eager:
            return  # kept as failed, with its error, for reprocessing
        countdown = RETRY_BACKOFF[min(self.request.retries, len(RETRY_BACKOFF) - 1)]
        raise self.retry(exc=exc, countdown=countdown) from None


@shared_task(acks_late=True)
def inbound_webhooks_sweep() -> int:
    """Process webhooks stored but never processed (their task was lost)."""
    cutoff = timezone.now() - timedelta(minutes=2)
    ids = list(
        InboundWebhook.objects.filter(status=InboundWebhook.Status.RECEIVED, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:500]
    )
    for webhook_id in ids:
        inbound_webhook_process.delay(webhook_id)
    return len(ids)


@shared_task(acks_late=True)
def delivery_attempt(delivery_id: str) -> None:
    # Retries are not Celery retries: the next attempt's time is stored on the delivery
    # and the sweep below sends it, so a lost task or a restarted broker loses nothing.
    callbacks.delivery_attempt(delivery_id=delivery_id)


@shared_task(acks_late=True)
def deliveries_dispatch_due() -> int:
    due = callbacks.deliveries_due()
    for delivery_id in due:
        delivery_attempt.delay(delivery_id)
    return len(due)
