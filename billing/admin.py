"""
The ledger in the admin: read-only by design. Ledger rows are append-only (the models
refuse updates and deletes), so staff can look, search and filter, never add, change or
delete; a correction is a new reversing transaction, booked by code.
"""

from django.contrib import admin

from billing.models import LedgerEntry, LedgerTransaction


class LedgerEntryInline(admin.TabularInline):
    model = LedgerEntry
    fields = ["account", "currency", "amount", "created_at"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "reference", "payment_id", "merchant", "livemode", "created_at"]
    list_filter = ["kind", "livemode"]
    search_fields = ["id", "reference", "payment_id", "merchant__id", "entries__account"]
    list_select_related = ["merchant"]
    readonly_fields = [
        "id",
        "merchant",
        "livemode",
        "kind",
        "reference",
        "payment_id",
        "description",
        "created_at",
    ]
    fields = readonly_fields
    inlines = [LedgerEntryInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
