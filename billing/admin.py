"""
The ledger in the admin: read-only by design. Ledger rows are append-only (the models
refuse updates and deletes), so staff can look, search and filter, never add, change or
delete; a correction is a new reversing transaction, booked by code.
"""

from django.contrib import admin

from billing.models import LedgerEntry, LedgerTransaction
from payments.admin import ReadOnlyAdmin, ReadOnlyTabularInline


class LedgerEntryInline(ReadOnlyTabularInline):
    model = LedgerEntry
    fields = ["account", "currency", "amount", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "reference", "payment_id", "merchant", "livemode", "created_at"]
    list_filter = ["kind", "livemode"]
    search_fields = ["id", "reference", "payment_id", "merchant__id", "entries__account"]
    list_select_related = ["merchant"]
    fields = [
        "id", "merchant", "livemode", "kind", "reference", "payment_id", "description",
        "created_at",
    ]  # fmt: skip
    inlines = [LedgerEntryInline]

    def has_change_permission(self, request, obj=None):
        # Stricter than other system rows: not even a save button.
        return False
