"""
The ledger in the admin: read-only by design. Ledger rows are append-only (the models
refuse updates and deletes), so staff can look, search and filter, never add, change or
delete; a correction is a new reversing transaction, booked by code.
"""

from django.contrib import admin
from django.http import Http404, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from billing.models import (
    BillingProfile,
    CreditNote,
    Invoice,
    InvoiceLine,
    LedgerEntry,
    LedgerTransaction,
)
from payments.admin import PaymentAdmin, ReadOnlyAdmin, ReadOnlyTabularInline


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


# --- Invoices -----------------------------------------------------------------------------


class InvoiceLineInline(ReadOnlyTabularInline):
    model = InvoiceLine
    fields = ["description", "quantity", "unit_amount", "amount", "period_start", "period_end"]


class CreditNoteInline(ReadOnlyTabularInline):
    model = CreditNote
    fields = ["number", "amount", "currency", "refund_id", "reason", "created_at"]


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    """Issued by the billing services only; staff read them and download the PDF."""

    list_display = [
        "__str__", "status", "total", "currency", "customer", "billing_reason", "merchant",
        "livemode", "created_at",
    ]  # fmt: skip
    list_filter = ["status", "billing_reason", "livemode", "currency"]
    search_fields = ["=id", "=number", "=payment__id", "=subscription_id", "=customer__id"]
    list_select_related = ["merchant", "customer"]
    show_full_result_count = False
    inlines = [InvoiceLineInline, CreditNoteInline]

    def get_readonly_fields(self, request, obj=None):
        return ["pdf", *super().get_readonly_fields(request, obj)]

    @admin.display(description="PDF")
    def pdf(self, obj):
        url = reverse("admin:billing_invoice_pdf", args=[obj.pk])
        return format_html('<a href="{}">Download {}.pdf</a>', url, obj.number or obj.pk)

    def get_urls(self):
        urls = [
            path(
                "<str:invoice_id>/pdf/",
                self.admin_site.admin_view(self.pdf_view),
                name="billing_invoice_pdf",
            )
        ]
        return urls + super().get_urls()

    def pdf_view(self, request, invoice_id):
        from billing.pdf import invoice_pdf_render

        invoice = self.get_object(request, invoice_id)
        if invoice is None or not self.has_view_permission(request, invoice):
            raise Http404("No such invoice")
        response = HttpResponse(invoice_pdf_render(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{invoice.number or invoice.pk}.pdf"'
        response["Cache-Control"] = "private, no-store"
        return response


@admin.register(BillingProfile)
class BillingProfileAdmin(admin.ModelAdmin):
    list_display = ["merchant", "legal_name", "invoice_prefix", "test_invoice_prefix"]
    search_fields = ["merchant__id", "merchant__name", "legal_name"]
    raw_id_fields = ["merchant"]


def payment_invoices_panel(payment) -> str:
    """The invoices a payment paid or was attempted for, and their credit notes."""
    invoices = Invoice.objects.filter(payment=payment).prefetch_related("credit_notes")
    rows = [
        format_html(
            '<li><a href="{}">{}</a> {} {} {}{}</li>',
            reverse("admin:billing_invoice_change", args=[invoice.pk]),
            invoice,
            invoice.status,
            invoice.total,
            invoice.currency,
            format_html_join(
                "", ", credit note {}", ((n.number,) for n in invoice.credit_notes.all())
            ),
        )
        for invoice in invoices
    ]
    if not rows:
        return ""
    items = format_html_join("", "{}", ((row,) for row in rows))
    return format_html("<strong>Invoices</strong><ul>{}</ul>", items)


PaymentAdmin.panels.append(payment_invoices_panel)
