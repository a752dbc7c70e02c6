from django.db import models
from django.db.models import Q

from payments.ids import PrefixedId


class InboundWebhook(models.Model):
    """
    The inbox: every request to `/webhooks/<provider>` is kept, verified or not. A
    verified one is unique per (provider, event id), so a provider's retries and
    duplicates are processed once; a failure keeps its error for reprocessing.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", "Received (awaiting processing)"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (not about our objects)"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected (failed verification)"

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("whin"), editable=False
    )
    provider = models.CharField(max_length=20)
    event_id = models.CharField(max_length=255, null=True, blank=True)
    event_type = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    headers = models.JSONField(default=dict)
    body = models.TextField(blank=True)
    payload = models.JSONField(null=True, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"],
                condition=Q(event_id__isnull=False),
                name="inboundwebhook_unique_event",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="inboundwebhook_status"),
        ]

    def __str__(self):
        return f"{self.provider} {self.event_type or '?'} {self.event_id or self.id}"


# --- Outbound: events and merchant callbacks -------------------------------------------


class Event(models.Model):
    """
    Something that happened to a merchant's object, written in the same transaction as
    the change (the outbox). Clients poll these or receive them as callbacks.
    """

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("evt"), editable=False
    )
    merchant = models.ForeignKey(
        "payments.Merchant", on_delete=models.CASCADE, related_name="events"
    )
    livemode = models.BooleanField(default=False)
    type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=40)
    data = models.JSONField(help_text="The object as the API rendered it when this happened.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["merchant", "-id"], name="event_merchant_id"),
            models.Index(fields=["merchant", "type", "-id"], name="event_merchant_type_id"),
            models.Index(fields=["object_id"], name="event_object"),
        ]

    def __str__(self):
        return f"{self.id} {self.type}"


class WebhookEndpoint(models.Model):
    """A merchant's URL that receives signed callbacks for the event types it chose."""

    id = models.CharField(primary_key=True, max_length=40, default=PrefixedId("we"), editable=False)
    merchant = models.ForeignKey(
        "payments.Merchant", on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    livemode = models.BooleanField(default=False)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True)
    enabled_events = models.JSONField(default=list, help_text='Event types, or ["*"] for all.')
    # Needed in clear to sign each delivery; shown to the merchant once, when made.
    secret = models.CharField(max_length=100)
    # After a rotation the old secret keeps signing too, so receivers can switch over.
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    disabled = models.BooleanField(default=False)
    disabled_reason = models.CharField(max_length=500, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["merchant", "-id"], name="endpoint_merchant_id")]

    def __str__(self):
        return f"{self.id} {self.url}"

    def wants(self, event_type: str) -> bool:
        return "*" in self.enabled_events or event_type in self.enabled_events


class Delivery(models.Model):
    """One event owed to one endpoint, until it is accepted (2xx) or given up on."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (gave up)"

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("dlv"), editable=False
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the next attempt is due. A worker claims an attempt by moving this forward by a
    # lease; if it dies mid-attempt the lease runs out and the sweep sends again.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "endpoint"], name="delivery_once_per_endpoint"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="delivery_due", condition=Q(status="pending")
            ),
            models.Index(fields=["endpoint", "-id"], name="delivery_endpoint_id"),
        ]

    def __str__(self):
        return f"{self.id} {self.status}"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.delivery_id} {self.status_code or self.error}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
