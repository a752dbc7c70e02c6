"""
The ledger in the admin: read-only by design. Ledger rows are append-only (the models
refuse updates and deletes), so staff can look, search and filter, never add, change or
delete; a correction is a new reversing transaction, booked by code.
"""

from datetime import UTC, datetime, time, timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from billing import reconciliation
from billing.models import (
    BillingProfile,
    CreditNote,
    Invoice,
    InvoiceLine,
    LedgerEntry,
    LedgerTransaction,
    ReconciliationMismatch,
    ReconciliationRun,
)
from payments.admin import PaymentAdmin, ReadOnlyAdmin, ReadOnlyTabularInline
from payments.errors import PaymentError


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


# --- Reconciliation ---------------------------------------------------------------------------
# Runs are started here (the "add" form) and run in Celery; their mismatches are settled
# here by taking the provider's state or resolving with a comment. Everything goes through
# `billing.reconciliation`, and every settlement is in the admin log (and the payment's).

RUN_PERMISSION = "billing.run_reconciliation"
RESOLVE_PERMISSION = "billing.resolve_mismatch"
# Each "take the provider's state" may ask the provider: keep one submission bounded.
MISMATCH_ACTION_LIMIT = 100


class ReconciliationStartForm(forms.ModelForm):
    """Provider, days (both inclusive, UTC) and an optional settlement report."""

    provider = forms.ChoiceField()
    since_day = forms.DateField(label="From (UTC day)", help_text="Payments made on or after.")
    until_day = forms.DateField(label="To (UTC day, inclusive)")
    report_file = forms.FileField(
        required=False,
        label="Settlement report (CSV)",
        help_text=(
            "Optional. Compare with this report instead of the provider's API. Columns: "
            + ", ".join(reconciliation.REPORT_COLUMNS)
            + " (see README: Reconciliation)."
        ),
    )

    class Meta:
        model = ReconciliationRun
        fields = ["provider"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [(p, p) for p in reconciliation.RECONCILABLE_PROVIDERS]
        yesterday = timezone.now().astimezone(UTC).date() - timedelta(days=1)
        self.fields["since_day"].initial = yesterday
        self.fields["until_day"].initial = yesterday

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        data["since"] = datetime.combine(data["since_day"], time.min, tzinfo=UTC)
        data["until"] = datetime.combine(
            data["until_day"] + timedelta(days=1), time.min, tzinfo=UTC
        )
        upload = data.get("report_file")
        data["report_content"] = None
        if upload:
            if upload.size > settings.RECONCILIATION_REPORT_MAX_BYTES:
                self.add_error(
                    "report_file", "The report is too large for an upload: use the command."
                )
                return data
            data["report_content"] = upload.read()
        try:
            reconciliation.reconciliation_check(
                provider=data["provider"],
                since=data["since"],
                until=data["until"],
                report=data["report_content"],
            )
        except PaymentError as exc:
            field = {"provider": "provider", "report": "report_file"}.get(exc.param, "until_day")
            self.add_error(field, exc.message)
        return data


def _run_mismatches_url(run_id: str) -> str:
    return reverse("admin:billing_reconciliationmismatch_changelist") + f"?run={run_id}"


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(admin.ModelAdmin):
    list_display = [
        "id", "provider", "since", "until", "source", "status", "progress", "mismatches",
        "started_by", "created_at", "finished_at",
    ]  # fmt: skip
    list_filter = ["provider", "status", "source"]
    search_fields = ["=id"]
    list_select_related = ["started_by"]
    show_full_result_count = False
    change_form_template = "admin/billing/reconciliationrun/change_form.html"
    fields = [
        "id", "provider", "source", "report_name", "since", "until", "status", "progress",
        "mismatches", "mismatches_by_kind", "error", "started_by", "created_at", "started_at",
        "finished_at",
    ]  # fmt: skip

    def get_queryset(self, request):
        # The report can be megabytes: never read it to show a row.
        return super().get_queryset(request).defer("report")

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ReconciliationStartForm
            kwargs["fields"] = ["provider", "since_day", "until_day", "report_file"]
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["provider", "since_day", "until_day", "report_file"]
        return self.fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.fields

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or request.user.has_perm(RUN_PERMISSION)

    def has_add_permission(self, request):
        return request.user.has_perm(RUN_PERMISSION)

    def has_change_permission(self, request, obj=None):
        return False  # a run is a record: only its progress changes, by the task

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        upload = data.get("report_file")
        run = reconciliation.reconciliation_start(
            provider=data["provider"],
            since=data["since"],
            until=data["until"],
            started_by=request.user,
            report=data["report_content"],
            report_name=upload.name if upload else "",
        )
        for field in ReconciliationRun._meta.concrete_fields:
            setattr(obj, field.attname, getattr(run, field.attname))
        obj._state.adding = False

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(
            request,
            f"Reconciliation {obj.pk} of {obj.provider} is queued: this page follows it.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:billing_reconciliationrun_change", args=[obj.pk])
        )

    @admin.display(description="Progress")
    def progress(self, run):
        ours = f"{run.ours_checked:,} of ours checked"
        if run.records_total:
            share = min(100, run.records_seen * 100 // run.records_total)
            return f"{run.records_seen:,} of {run.records_total:,} records ({share}%), {ours}"
        return f"{run.records_seen:,} provider records read, {ours}"

    @admin.display(description="Mismatches")
    def mismatches(self, run):
        return format_html(
            '<a href="{}">{} mismatch{}</a>',
            _run_mismatches_url(run.pk),
            run.mismatches_found,
            "" if run.mismatches_found == 1 else "es",
        )

    @admin.display(description="By kind")
    def mismatches_by_kind(self, run):
        counts = reconciliation.mismatch_counts(run)
        labels = dict(ReconciliationMismatch.Kind.choices)
        return (
            format_html_join(
                ", ",
                '<a href="{}&kind={}">{}: {}</a>',
                (
                    (_run_mismatches_url(run.pk), kind, labels[kind], count)
                    for kind, count in counts.items()
                    if count
                ),
            )
            or "—"
        )


class RunFilter(admin.SimpleListFilter):
    """The latest runs to choose from; any run through `?run=<id>` (the runs' links)."""

    title = "run"
    parameter_name = "run"

    def lookups(self, request, model_admin):
        runs = ReconciliationRun.objects.defer("report").order_by("-id")[:20]
        return [(run.pk, str(run)) for run in runs]

    def queryset(self, request, queryset):
        return queryset.filter(run_id=self.value()) if self.value() else queryset


class ResolveForm(forms.Form):
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}), max_length=2000, strip=True
    )


@admin.register(ReconciliationMismatch)
class ReconciliationMismatchAdmin(admin.ModelAdmin):
    list_display = [
        "id", "kind", "state", "summary", "payment_link", "provider", "run_link", "created_at",
    ]  # fmt: skip
    list_filter = [RunFilter, "kind", "state", "provider"]
    search_fields = [
        "=id", "=payment__id", "=refund__id", "=provider_payment_id", "=provider_refund_id",
        "=reference",
    ]  # fmt: skip
    search_help_text = "An exact id: mismatch, our payment or refund, the provider's id."
    show_full_result_count = False
    actions = ["take_provider_state", "mark_resolved"]
    fields = [
        "id", "run_link", "provider", "kind", "state", "summary", "payment_link", "refund",
        "provider_payment_id", "provider_refund_id", "reference", "ours", "theirs",
        "resolution", "resolved_by", "resolved_at", "created_at",
    ]  # fmt: skip
    readonly_fields = fields

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or self.has_resolve_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # settled only through the two actions

    def has_delete_permission(self, request, obj=None):
        return False

    def has_resolve_permission(self, request):
        return request.user.has_perm(RESOLVE_PERMISSION)

    @admin.display(description="Payment", ordering="payment_id")
    def payment_link(self, mismatch):
        if not mismatch.payment_id:
            return "—"
        url = reverse("admin:payments_payment_change", args=[mismatch.payment_id])
        return format_html('<a href="{}">{}</a>', url, mismatch.payment_id)

    @admin.display(description="Run", ordering="run_id")
    def run_link(self, mismatch):
        url = reverse("admin:billing_reconciliationrun_change", args=[mismatch.run_id])
        return format_html('<a href="{}">{}</a>', url, mismatch.run_id)

    @admin.action(description="Take the provider's state", permissions=["resolve"])
    def take_provider_state(self, request, queryset):
        mismatches = self._open(request, queryset)
        if mismatches is None:
            return None
        if request.POST.get("confirmed") != "yes":
            return self._confirm(
                request,
                mismatches,
                action="take_provider_state",
                title="Take the provider's state",
                intro=(
                    "Our payments and refunds will be made what the provider says they are, "
                    "through the payment services; money differences are booked in the "
                    "ledger and each change is in the payment's timeline under your name."
                ),
                submit="Yes, take the provider's state",
            )
        fixed = 0
        for mismatch in mismatches:
            try:
                outcome = reconciliation.mismatch_fix_from_provider(
                    mismatch=mismatch, user=request.user
                )
            except PaymentError as exc:
                self.message_user(request, f"{mismatch.pk}: {exc.message}", messages.ERROR)
                continue
            self.log_change(request, outcome.mismatch, outcome.message)
            if outcome.payment is not None:
                self.log_change(
                    request, outcome.payment, f"Reconciliation {mismatch.pk}: {outcome.message}"
                )
            fixed += 1
        if fixed:
            self.message_user(
                request, f"Took the provider's state for {fixed} mismatch(es).", messages.SUCCESS
            )
        return None

    @admin.action(description="Mark resolved (with a comment)", permissions=["resolve"])
    def mark_resolved(self, request, queryset):
        mismatches = self._open(request, queryset)
        if mismatches is None:
            return None
        confirmed = request.POST.get("confirmed") == "yes"
        form = ResolveForm(request.POST if confirmed else None)
        if not (confirmed and form.is_valid()):
            return self._confirm(
                request,
                mismatches,
                action="mark_resolved",
                title="Mark resolved",
                intro="Say what was done about these mismatches: the comment is kept with each.",
                submit="Mark resolved",
                form=form,
            )
        comment = form.cleaned_data["comment"]
        resolved = 0
        for mismatch in mismatches:
            try:
                outcome = reconciliation.mismatch_resolve(
                    mismatch=mismatch, user=request.user, comment=comment
                )
            except PaymentError as exc:
                self.message_user(request, f"{mismatch.pk}: {exc.message}", messages.ERROR)
                continue
            self.log_change(request, outcome.mismatch, f"Resolved: {comment}")
            resolved += 1
        if resolved:
            self.message_user(request, f"Resolved {resolved} mismatch(es).", messages.SUCCESS)
        return None

    def _open(self, request, queryset) -> list | None:
        if not self.has_resolve_permission(request):
            raise PermissionDenied("You may not settle reconciliation mismatches.")
        mismatches = list(
            queryset.filter(state=ReconciliationMismatch.State.OPEN)
            .select_related("run")
            .order_by("pk")[: MISMATCH_ACTION_LIMIT + 1]
        )
        if not mismatches:
            self.message_user(request, "None of the selected mismatches is open.", messages.WARNING)
            return None
        if len(mismatches) > MISMATCH_ACTION_LIMIT:
            self.message_user(
                request,
                f"Select at most {MISMATCH_ACTION_LIMIT} open mismatches at a time.",
                messages.ERROR,
            )
            return None
        return mismatches

    def _confirm(self, request, mismatches, *, action, title, intro, submit, form=None):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "intro": intro,
            "submit": submit,
            "action": action,
            "mismatches": mismatches,
            "form": form,
        }
        return TemplateResponse(
            request, "admin/billing/reconciliationmismatch/confirm_action.html", context
        )


def _reconciliation_panel(payment) -> str:
    """The payment's reconciliation mismatches, on its admin page."""
    found = list(ReconciliationMismatch.objects.filter(payment_id=payment.pk).order_by("-id")[:10])
    if not found:
        return ""
    rows = format_html_join(
        "",
        '<li><a href="{}">{}</a> {} ({}): {}</li>',
        (
            (
                reverse("admin:billing_reconciliationmismatch_change", args=[m.pk]),
                m.pk,
                m.get_kind_display(),
                m.get_state_display(),
                m.summary,
            )
            for m in found
        ),
    )
    return format_html("<strong>Reconciliation</strong><ul>{}</ul>", rows)


PaymentAdmin.panels.append(_reconciliation_panel)
