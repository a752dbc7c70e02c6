from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from payments import services
from payments.models import (
    APIKey,
    CreditTransaction,
    Customer,
    CustomerBalance,
    Merchant,
    Payment,
    PaymentEvent,
    Refund,
)


class ReadOnlyTabularInline(admin.TabularInline):
    """Rows shown beside their parent, never edited or added there."""

    extra = 0
    max_num = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the system: staff look and act through actions, never edit."""

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class APIKeyInline(ReadOnlyTabularInline):
    model = APIKey
    fields = ["prefix", "kind", "livemode", "name", "created_at", "last_used_at", "revoked_at"]
    show_change_link = True


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "is_active", "default_provider", "created_at"]
    list_filter = ["is_active", "default_provider"]
    search_fields = ["id", "name"]
    readonly_fields = ["id", "created_at", "new_api_key"]
    fields = ["id", "name", "is_active", "default_provider", "created_at", "new_api_key"]
    inlines = [APIKeyInline]

    @admin.display(description="API keys")
    def new_api_key(self, obj):
        if not obj.pk:
            return "Save the merchant first."
        url = reverse("admin:payments_apikey_add") + f"?merchant={obj.pk}"
        return format_html('<a class="addlink" href="{}">Create an API key</a>', url)


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "merchant",
        "kind",
        "livemode",
        "name",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["kind", "livemode", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["id", "prefix", "merchant__name", "merchant__id", "name"]
    list_select_related = ["merchant"]
    raw_id_fields = ["merchant"]
    actions = ["revoke_selected"]
    readonly_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["merchant", "kind", "livemode", "name"]
        return [
            "id",
            "merchant",
            "kind",
            "livemode",
            "prefix",
            "name",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # A key's identity never changes after it is issued; only its label does.
        return [*self.readonly_fields, "merchant", "kind", "livemode"]

    def has_delete_permission(self, request, obj=None):
        # Keys are revoked, never deleted: the row is the record of who could act when.
        return False

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        created, raw_key = services.api_key_create(
            merchant=obj.merchant, kind=obj.kind, livemode=obj.livemode, name=obj.name
        )
        obj.pk = created.pk
        obj.refresh_from_db()
        # Kept on the request only, for the one page that shows it.
        request._issued_api_key = raw_key

    def response_add(self, request, obj, post_url_continue=None):
        raw_key = getattr(request, "_issued_api_key", None)
        if raw_key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "api_key": obj,
            "raw_key": raw_key,
            "title": "API key created",
        }
        response = TemplateResponse(request, "admin/payments/apikey/created.html", context)
        # The page holds a secret: no browser or proxy may keep a copy.
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(api_key=api_key)
            self.log_change(request, api_key, "Revoked the API key.")
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)


class CustomerBalanceInline(ReadOnlyTabularInline):
    model = CustomerBalance
    fields = ["currency", "amount", "updated_at"]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["id", "external_id", "email", "name", "merchant", "created_at"]
    search_fields = ["=id", "=external_id", "email"]
    list_select_related = ["merchant"]
    raw_id_fields = ["merchant"]
    show_full_result_count = False
    readonly_fields = ["id", "created_at"]

    inlines = [CustomerBalanceInline]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "merchant"] if obj else self.readonly_fields


class PaymentEventInline(ReadOnlyTabularInline):
    model = PaymentEvent
    fields = ["created_at", "type", "from_status", "to_status", "source", "actor", "data"]
    ordering = ["id"]


class RefundInline(ReadOnlyTabularInline):
    model = Refund
    fields = [
        "id",
        "amount",
        "status",
        "reason",
        "provider_refund_id",
        "source",
        "actor",
        "created_at",
    ]
    show_change_link = True


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["id", "payment", "amount", "currency", "status", "provider", "created_at"]
    list_filter = ["status", "provider"]
    search_fields = ["=id", "=payment__id", "=provider_refund_id"]
    show_full_result_count = False


@admin.register(CreditTransaction)
class CreditTransactionAdmin(ReadOnlyAdmin):
    list_display = ["id", "customer", "type", "amount", "currency", "balance_after", "created_at"]
    list_filter = ["type", "currency"]
    search_fields = ["=id", "=customer__id", "=customer__external_id"]
    list_select_related = ["customer"]
    show_full_result_count = False


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    """Read-only: every change goes through the payment services (refunds and other staff
    actions arrive with the back-office work), never through a form edit."""

    list_display = [
        "id",
        "merchant",
        "status",
        "amount",
        "currency",
        "provider",
        "order_id",
        "created_at",
    ]
    list_filter = ["status", "provider", "currency"]
    search_fields = ["=id", "=order_id", "=provider_payment_id", "=reference"]
    list_select_related = ["merchant"]
    show_full_result_count = False
    inlines = [PaymentEventInline, RefundInline]
