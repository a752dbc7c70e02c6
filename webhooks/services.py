"""The inbound webhook inbox: receive (store, verify, dedupe) and process."""

import logging
import traceback
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from payments import providers
from payments import services as payment_services
from payments.models import PaymentEvent
from payments.providers.base import WebhookVerificationError
from payments_project import metrics
from payments_project.celery import enqueue_on_commit
from webhooks.models import InboundWebhook

logger = logging.getLogger(__name__)

# Kept for a forensic look at a forged request, without letting a flood of them fill the
# disk (throttling the endpoint is the other half).
REJECTED_BODY_LIMIT = 4 * 1024
# Headers worth keeping; cookies and proxies' internals are not.
_KEPT_HEADERS = {"content-type", "user-agent", "stripe-signature", "webhook-id",
                 "webhook-timestamp", "webhook-signature", "x-forwarded-for"}  # fmt: skip


@dataclass(frozen=True)
class Receipt:
    webhook: InboundWebhook
    duplicate: bool


def webhook_receive(*, provider: str, body: bytes, headers: dict, source_ip: str | None) -> Receipt:
    """
    Verify and store one request. Raises WebhookVerificationError (after recording the
    request as rejected) when it is not provably from the provider.
    """
    adapter = providers.get_provider(provider)
    kept_headers = {k.lower(): v for k, v in headers.items() if k.lower() in _KEPT_HEADERS}
    text = body.decode("utf-8", errors="replace")
    try:
        payload = adapter.webhook_verify(body, headers, source_ip or "")
        event_id, event_type = adapter.webhook_identify(payload)
    except WebhookVerificationError as exc:
        InboundWebhook.objects.create(
            provider=provider,
            status=InboundWebhook.Status.REJECTED,
            headers=kept_headers,
            body=text[:REJECTED_BODY_LIMIT],
            source_ip=source_ip,
            error=str(exc)[:2000],
        )
        metrics.webhook_received_count(provider, "rejected")
        raise
    try:
        with transaction.atomic():
            webhook = InboundWebhook.objects.create(
                provider=provider,
                event_id=event_id,
                event_type=event_type,
                headers=kept_headers,
                body=text,
                payload=payload,
                source_ip=source_ip,
            )
            enqueue_on_commit(_process_task(), webhook.pk)
    except IntegrityError:
        existing = InboundWebhook.objects.get(provider=provider, event_id=event_id)
        logger.info(
            "Webhook %s %s %s is a duplicate of %s",
            provider, event_type, event_id, existing.pk,
            extra={"webhook_id": existing.pk, "provider": provider, "duplicate": True},
        )  # fmt: skip
        metrics.webhook_received_count(provider, "duplicate")
        return Receipt(existing, duplicate=True)
    metrics.webhook_received_count(provider, "accepted")
    logger.info(
        "Webhook %s %s %s stored as %s",
        provider, event_type, event_id, webhook.pk,
        extra={"webhook_id": webhook.pk, "provider": provider, "duplicate": False},
    )  # fmt: skip
    return Receipt(webhook, duplicate=False)


def _process_task():
    from webhooks.tasks import inbound_webhook_process

    return inbound_webhook_process


def webhook_process(*, webhook_id: str, force: bool = False) -> InboundWebhook:
    """
    Apply a stored webhook, once. The effect and the "processed" mark commit together;
    a failure rolls the effect back and keeps the error and traceback on the row.
    `force` reprocesses rows already processed or ignored (an operator's choice).
    """
    try:
        with transaction.atomic():
            webhook = InboundWebhook.objects.select_for_update().get(pk=webhook_id)
            done = {InboundWebhook.Status.PROCESSED, InboundWebhook.Status.IGNORED}
            if webhook.status == InboundWebhook.Status.REJECTED or (
                webhook.status in done and not force
            ):
                return webhook
            event = providers.get_provider(webhook.provider).webhook_event(webhook.payload)
            actor = f"{webhook.provider}:{event.event_id}"
            applied = None
            if event.payment is not None:
                applied = payment_services.payment_sync_from_provider(
                    provider=webhook.provider,
                    remote=event.payment,
                    source=PaymentEvent.Source.PROVIDER,
                    actor=actor,
                )
            if event.refund is not None:
                applied = payment_services.refund_sync_from_provider(
                    provider=webhook.provider,
                    remote=event.refund,
                    source=PaymentEvent.Source.PROVIDER,
                    actor=actor,
                )
            webhook.status = (
                InboundWebhook.Status.PROCESSED if applied else InboundWebhook.Status.IGNORED
            )
            webhook.processed_at = timezone.now()
            webhook.attempts += 1
            webhook.error = webhook.traceback = ""
            webhook.save(update_fields=["status", "processed_at", "attempts", "error", "traceback"])
        logger.info(
            "Webhook %s %s",
            webhook.pk,
            webhook.status,
            extra={"webhook_id": webhook.pk, "provider": webhook.provider},
        )
        return webhook
    except Exception as exc:
        logger.exception("Processing inbound webhook %s failed", webhook_id)
        InboundWebhook.objects.filter(pk=webhook_id).update(
            status=InboundWebhook.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            traceback=traceback.format_exc()[-20000:],
            attempts=F("attempts") + 1,
        )
        raise


def webhooks_reprocess(webhook_ids) -> dict[str, str]:
    """
    Process stored webhooks again (an operator's choice, so processed ones too). Returns
    each id's resulting status; a failure stays on its row and does not stop the others.
    """
    results = {}
    for webhook_id in dict.fromkeys(webhook_ids):
        try:
            results[webhook_id] = webhook_process(webhook_id=webhook_id, force=True).status
        except Exception:  # logged by webhook_process; the row keeps error and traceback
            results[webhook_id] = InboundWebhook.Status.FAILED
    return results


def reprocess_summary(results: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for status in results.values():
        counts[status] = counts.get(status, 0) + 1
    return ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "none"
