"""
Merchant callbacks: events recorded in the outbox, endpoints, and signed deliveries.

Each (event, endpoint) pair is one `Delivery`, attempted until the endpoint answers 2xx or
the retry schedule (`WEBHOOK_RETRY_SCHEDULE`, about three days) runs out. Attempts are
claimed with a lease on `next_attempt_at`, so a worker that dies mid-attempt only delays
the delivery: the sweep sends it again. Receivers may therefore get an event more than
once (they deduplicate on `webhook-id`), never zero times.
"""

import ipaddress
import json
import logging
import random
import socket
import time
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from payments import signing
from payments.errors import ValidationFailed
from payments.models import Merchant
from payments.outcomes import Outcome
from payments_project import metrics
from payments_project.celery import enqueue_on_commit
from webhooks.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint

logger = logging.getLogger(__name__)

# Every event type a merchant can subscribe to (`*` means all of them).
EVENT_TYPES = [
    "payment.requires_capture",
    "payment.succeeded",
    "payment.failed",
    "payment.canceled",
    "refund.succeeded",
    "refund.failed",
    "subscription.activated",
    "subscription.renewed",
    "subscription.past_due",
    "subscription.canceled",
    "subscription.expired",
    "invoice.paid",
]
RESPONSE_EXCERPT_LENGTH = 1000


def _lease() -> timedelta:
    return timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 30)


# --- The outbox ------------------------------------------------------------------------------


def event_record(outcome: Outcome) -> Event | None:
    """
    Write the event and one delivery per subscribed endpoint, in the caller's transaction
    (the change being announced); the deliveries are sent once it commits. Outcomes that
    are not merchant-facing event types (internal bookkeeping) are not events.
    """
    if outcome.type not in EVENT_TYPES:
        return None
    event = Event.objects.create(
        merchant_id=outcome.merchant_id,
        livemode=outcome.livemode,
        type=outcome.type,
        object_id=outcome.object_id,
        data=outcome.data,
    )
    endpoints = WebhookEndpoint.objects.filter(
        merchant_id=outcome.merchant_id, livemode=outcome.livemode, disabled=False
    )
    now = timezone.now()
    for endpoint in endpoints:
        if endpoint.wants(outcome.type):
            delivery = Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=now)
            _send_on_commit(delivery)
    return event


def _send_on_commit(delivery: Delivery) -> None:
    from webhooks.tasks import delivery_attempt

    enqueue_on_commit(delivery_attempt, delivery.pk)


# --- Endpoints -------------------------------------------------------------------------------


def endpoint_url_check(url: str) -> None:
    """
    Refuse URLs that would make us call into our own network (SSRF): only http(s), and
    only to public addresses unless WEBHOOK_ALLOW_PRIVATE_URLS. Checked when an endpoint
    is saved and again before every attempt (a DNS name can change its answer).
    """
    problem = _url_problem(url)
    if problem:
        raise ValidationFailed(problem, param="url")


def _url_problem(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "The URL must be an http or https URL with a host."
    if settings.WEBHOOK_ALLOW_PRIVATE_URLS:
        return ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except (socket.gaierror, UnicodeError, ValueError):
        return f"The host {parts.hostname!r} does not resolve."
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            return (
                f"The host {parts.hostname!r} is a loopback, private or reserved address "
                f"({ip}); callbacks go to public addresses only."
            )
    return ""


def _event_types_check(enabled_events: list[str]) -> list[str]:
    if not enabled_events:
        raise ValidationFailed("Name at least one event type, or '*'.", param="enabled_events")
    unknown = [name for name in enabled_events if name != "*" and name not in EVENT_TYPES]
    if unknown:
        raise ValidationFailed(f"Unknown event type: '{unknown[0]}'.", param="enabled_events")
    return sorted(set(enabled_events))


def endpoint_create(
    *,
    merchant: Merchant,
    url: str,
    enabled_events: list[str],
    livemode: bool = False,
    description: str = "",
) -> WebhookEndpoint:
    """A new endpoint with a fresh `whsec_…` secret (on `.secret`: show it once)."""
    endpoint_url_check(url)
    return WebhookEndpoint.objects.create(
        merchant=merchant,
        livemode=livemode,
        url=url,
        enabled_events=_event_types_check(enabled_events),
        description=description,
        secret=signing.webhook_secret_generate(),
    )


def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    enabled_events: list[str] | None = None,
    description: str | None = None,
    disabled: bool | None = None,
) -> WebhookEndpoint:
    fields = {"updated_at"}
    if url is not None:
        endpoint_url_check(url)
        endpoint.url = url
        fields.add("url")
    if enabled_events is not None:
        endpoint.enabled_events = _event_types_check(enabled_events)
        fields.add("enabled_events")
    if description is not None:
        endpoint.description = description
        fields.add("description")
    was_disabled = endpoint.disabled
    if disabled is not None:
        endpoint.disabled = disabled
        # Switching it back on is a fresh start; switching it off by hand says so.
        endpoint.disabled_reason = "Disabled by the merchant." if disabled else ""
        endpoint.failing_since = None
        fields |= {"disabled", "disabled_reason", "failing_since"}
    endpoint.save(update_fields=sorted(fields))
    if was_disabled and disabled is False:
        # What piled up while it was off goes out now.
        deliveries_redeliver(endpoint_id=endpoint.pk, pending_only=True)
    return endpoint


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret; the old one keeps signing alongside it for the grace period."""
    grace = timedelta(hours=settings.WEBHOOK_SECRET_ROTATION_GRACE_HOURS)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = timezone.now() + grace
    endpoint.secret = signing.webhook_secret_generate()
    endpoint.save(
        update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"]
    )
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


# --- Deliveries ------------------------------------------------------------------------------


def delivery_body(event: Event) -> str:
    return json.dumps(
        {
            "id": event.id,
            "type": event.type,
            "created": event.created_at.isoformat().replace("+00:00", "Z"),
            "data": {"object": event.data},
        },
        separators=(",", ":"),
    )


def delivery_headers(endpoint: WebhookEndpoint, event: Event, body: str) -> dict:
    now = timezone.now()
    headers = signing.webhook_headers(endpoint.secret, event.id, body, at=now)
    if endpoint.previous_secret and (endpoint.previous_secret_expires_at or now) > now:
        # Standard Webhooks allows several signatures, space-separated.
        old = signing.webhook_headers(endpoint.previous_secret, event.id, body, at=now)
        headers["webhook-signature"] += " " + old["webhook-signature"]
    return {
        **headers,
        "Content-Type": "application/json",
        "User-Agent": "payments-platform-webhooks/1",
    }


def delivery_attempt(*, delivery_id: str) -> DeliveryAttempt | None:
    """
    Make one attempt if the delivery is due, and schedule what follows. Returns the
    attempt, or None when there was nothing to do (not due, already done, claimed by
    another worker).
    """
    now = timezone.now()
    # A disabled endpoint's deliveries wait, untouched, until it is enabled again. The
    # endpoint test is a subquery, not a join: with a join Django wraps the whole filter
    # in `id IN (…)`, and PostgreSQL re-checks only that after waiting on a competing
    # claim, so two workers would both win. Kept in the outer WHERE, status and time are
    # re-checked and exactly one UPDATE claims the attempt.
    claimed = Delivery.objects.filter(
        pk=delivery_id,
        status=Delivery.Status.PENDING,
        next_attempt_at__lte=now,
        endpoint_id__in=WebhookEndpoint.objects.filter(disabled=False).values("pk"),
    ).update(next_attempt_at=now + _lease(), last_attempt_at=now)
    if not claimed:
        return None
    delivery = Delivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    event, endpoint = delivery.event, delivery.endpoint
    body = delivery_body(event)
    attempt = DeliveryAttempt(delivery=delivery, attempted_at=now)
    started = time.monotonic()
    problem = _url_problem(endpoint.url)
    if problem:
        attempt.error = f"Not sent: {problem}"[:500]
    else:
        try:
            response = requests.post(
                endpoint.url,
                data=body.encode(),
                headers=delivery_headers(endpoint, event, body),
                timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
                # A redirect could lead anywhere, including inside our network.
                allow_redirects=False,
            )
            attempt.status_code = response.status_code
            attempt.response_excerpt = _storable(response.text[:RESPONSE_EXCERPT_LENGTH])
        except requests.RequestException as exc:
            attempt.error = _storable(f"{type(exc).__name__}: {exc}"[:500])
    attempt.duration_ms = int((time.monotonic() - started) * 1000)
    with transaction.atomic():
        attempt.save()
        _settle(delivery, endpoint, attempt)
    return attempt


def _storable(text: str) -> str:
    # Whatever a receiver answers is kept; PostgreSQL text cannot hold NUL, and an attempt
    # that cannot be saved would be sent again forever.
    return text.replace("\x00", "\ufffd")


def _settle(delivery: Delivery, endpoint: WebhookEndpoint, attempt: DeliveryAttempt) -> None:
    now = timezone.now()
    delivery.attempts += 1
    if attempt.succeeded:
        delivery.status = Delivery.Status.SUCCEEDED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
    else:
        schedule = settings.WEBHOOK_RETRY_SCHEDULE
        if delivery.attempts > len(schedule):
            delivery.status = Delivery.Status.FAILED
            delivery.next_attempt_at = None
        else:
            wait = schedule[delivery.attempts - 1] * random.uniform(1.0, 1.1)
            delivery.next_attempt_at = now + timedelta(seconds=wait)
        _endpoint_note_failure(endpoint, now)
    delivery.save(update_fields=["status", "attempts", "delivered_at", "next_attempt_at"])
    metrics.delivery_settled_count(delivery.status)


def _endpoint_note_failure(endpoint: WebhookEndpoint, now) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
        failing_since=now
    )
    limit = now - timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS)
    disabled = WebhookEndpoint.objects.filter(
        pk=endpoint.pk, disabled=False, failing_since__lt=limit
    ).update(
        disabled=True,
        disabled_reason=(
            f"Every delivery failed for more than {settings.WEBHOOK_DISABLE_AFTER_DAYS} days "
            f"(last: {now:%Y-%m-%d %H:%M} UTC). Fix the endpoint, then enable it again."
        ),
    )
    if disabled:
        logger.warning("Disabled webhook endpoint %s after days of failures", endpoint.pk)


def deliveries_due(limit: int = 500) -> list[str]:
    return list(
        Delivery.objects.filter(
            status=Delivery.Status.PENDING,
            next_attempt_at__lte=timezone.now(),
            endpoint__disabled=False,
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def deliveries_redeliver(
    *,
    event_id: str | None = None,
    endpoint_id: str | None = None,
    failed_only: bool = False,
    pending_only: bool = False,
    since=None,
    merchant: Merchant | None = None,
) -> int:
    """Send matching deliveries again now (succeeded ones too, unless `failed_only`)."""
    deliveries = Delivery.objects.all()
    if pending_only:
        deliveries = deliveries.filter(status=Delivery.Status.PENDING)
    if merchant is not None:
        deliveries = deliveries.filter(event__merchant=merchant)
    if event_id:
        deliveries = deliveries.filter(event_id=event_id)
    if endpoint_id:
        deliveries = deliveries.filter(endpoint_id=endpoint_id)
    if failed_only:
        # Given up, or still retrying after at least one failure.
        deliveries = deliveries.filter(
            Q(status=Delivery.Status.FAILED) | Q(status=Delivery.Status.PENDING, attempts__gt=0)
        )
    if since is not None:
        deliveries = deliveries.filter(event__created_at__gte=since)
    with transaction.atomic():
        ids = list(deliveries.select_for_update().values_list("pk", flat=True))
        # A fresh run of the retry schedule; the attempt log keeps the earlier ones.
        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.Status.PENDING,
            next_attempt_at=timezone.now(),
            delivered_at=None,
            attempts=0,
        )
        for delivery in Delivery.objects.filter(pk__in=ids):
            _send_on_commit(delivery)
    return len(ids)
