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
