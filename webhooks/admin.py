from django.conf import settings
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from payments.admin import PaymentAdmin, ReadOnlyAdmin, ReadOnlyTabularInline
from webhooks import callbacks, services
from webhooks.models import Delivery, DeliveryAttempt, Event, InboundWebhook, WebhookEndpoint


@admin.register(InboundWebhook)
class InboundWebhookAdmin(ReadOnlyAdmin):
    list_display = ["id", "provider", "event_type", "status", "received_at", "attempts"]
    list_filter = ["provider", "status"]
    search_fields = ["=id", "=event_id"]
    show_full_result_count = False
    actions = ["reprocess"]

    @admin.action(description="Reprocess selected webhooks", permissions=["change"])
    def reprocess(self, request, queryset):
        webhooks = list(queryset.exclude(status=InboundWebhook.Status.REJECTED))
        results = services.webhooks_reprocess(webhook.pk for webhook in webhooks)
        for webhook in webhooks:
            self.log_change(request, webhook, f"Reprocessed: {results[webhook.pk]}")
        summary = services.reprocess_summary(results)
        failed = InboundWebhook.Status.FAILED in results.values()
        level = messages.WARNING if failed else messages.SUCCESS
        self.message_user(request, f"Reprocessed: {summary}.", level)


class DeliveryAttemptInline(ReadOnlyTabularInline):
    model = DeliveryAttempt
    fields = ["attempted_at", "status_code", "duration_ms", "error", "response_excerpt"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "event",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status"]
    search_fields = ["=id", "=event__id", "=endpoint__id"]
    list_select_related = ["event", "endpoint"]
    show_full_result_count = False
    inlines = [DeliveryAttemptInline]
    actions = ["redeliver"]

    @admin.action(description="Redeliver selected callbacks now", permissions=["change"])
    def redeliver(self, request, queryset):
        count = 0
        for delivery in queryset:
            count += callbacks.deliveries_redeliver(
                event_id=delivery.event_id, endpoint_id=delivery.endpoint_id
            )
            self.log_change(request, delivery, "Queued for redelivery.")
        self.message_user(request, f"Queued {count} delivery(ies).", messages.SUCCESS)


class DeliveryInline(ReadOnlyTabularInline):
    model = Delivery
    fields = ["endpoint", "status", "attempts", "next_attempt_at", "delivered_at"]
    show_change_link = True


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "merchant", "object_id", "livemode", "created_at"]
    list_filter = ["type", "livemode"]
    search_fields = ["=id", "=object_id"]
    list_select_related = ["merchant"]
    show_full_result_count = False
    inlines = [DeliveryInline]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["id", "merchant", "url", "disabled", "failing_since", "created_at"]
    list_filter = ["disabled", "livemode"]
    search_fields = ["=id", "url", "merchant__name"]
    list_select_related = ["merchant"]
    # The secret signs callbacks; staff never need to read it here.
    exclude = ["secret", "previous_secret"]
    readonly_fields = [
        "id", "merchant", "livemode", "url", "enabled_events", "disabled_reason",
        "failing_since", "previous_secret_expires_at", "created_at", "updated_at",
    ]  # fmt: skip
    actions = ["enable", "disable", "rotate_secret"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Rotate the signing secret (shown once)", permissions=["change"])
    def rotate_secret(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Rotate one endpoint at a time.", messages.ERROR)
            return None
        endpoint = callbacks.endpoint_rotate_secret(endpoint=queryset.get())
        hours = settings.WEBHOOK_SECRET_ROTATION_GRACE_HOURS
        self.log_change(request, endpoint, "Rotated the signing secret.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "New signing secret",
            "endpoint": endpoint,
            "grace_hours": hours,
        }
        response = TemplateResponse(request, "admin/webhooks/webhookendpoint/secret.html", context)
        # The page holds a secret: no browser or proxy may keep a copy.
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Enable selected endpoints (and send what waited)")
    def enable(self, request, queryset):
        for endpoint in queryset:
            callbacks.endpoint_update(endpoint=endpoint, disabled=False)
            self.log_change(request, endpoint, "Enabled.")
        self.message_user(request, "Enabled.", messages.SUCCESS)

    @admin.action(description="Disable selected endpoints")
    def disable(self, request, queryset):
        for endpoint in queryset:
            callbacks.endpoint_update(endpoint=endpoint, disabled=True)
            self.log_change(request, endpoint, "Disabled.")
        self.message_user(request, "Disabled.", messages.SUCCESS)


def payment_callbacks_panel(payment) -> str:
    """The payment's events (and its refunds'), each with its deliveries, for its page."""
    object_ids = [payment.pk, *payment.refunds.values_list("pk", flat=True)]
    events = (
        Event.objects.filter(object_id__in=object_ids)
        .prefetch_related("deliveries__endpoint")
        .order_by("id")
    )
    rows = [
        format_html(
            '<li><a href="{}">{}</a> {} — {}</li>',
            reverse("admin:webhooks_event_change", args=[event.pk]),
            event.pk,
            event.type,
            format_html_join(
                ", ",
                '<a href="{}">{}</a> {}',
                (
                    (
                        reverse("admin:webhooks_delivery_change", args=[d.pk]),
                        d.endpoint.url,
                        d.status,
                    )
                    for d in event.deliveries.all()
                ),
            )
            or "no endpoint subscribed",
        )
        for event in events
    ]
    if not rows:
        return ""
    items = format_html_join("", "{}", ((row,) for row in rows))
    return format_html("<strong>Callbacks</strong><ul>{}</ul>", items)


PaymentAdmin.panels.append(payment_callbacks_panel)
