import re
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from payments import money, providers, services, staff
from payments.errors import PaymentError, ValidationFailed
from payments.ids import ulid_floor
from payments.models import (
    APIKey,
    CreditTransaction,
    Customer,
    CustomerBalance,
    Merchant,
    Payment,
    PaymentEvent,
    PaymentStatus,
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


class CappedCountPaginator(Paginator):
    """
    Counts at most `CAP` rows: a changelist over millions of payments must not run a
    full COUNT(*) on every page view. Past the cap, the page links stop there (filters or
    search narrow the list).
    """

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.CAP + 1].count()


class ChoicesFilter(admin.SimpleListFilter):
    """
    A filter with fixed options: Django's default for a plain field first asks the
    database for every distinct value, a full scan of a million payments on each page.
    """

    field = ""

    def choices_for(self) -> list[str]:
        raise NotImplementedError

    def lookups(self, request, model_admin):
        return [(value, value) for value in self.choices_for()]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class ProviderFilter(ChoicesFilter):
    title = parameter_name = field = "provider"

    def choices_for(self):
        return list(providers.ALL_PROVIDERS)


class CurrencyFilter(ChoicesFilter):
    title = parameter_name = field = "currency"

    def choices_for(self):
        return settings.ADMIN_CURRENCY_FILTER


class CreatedFilter(admin.SimpleListFilter):
    """Created within a recent window, as an id range: ids begin with their creation time."""

    title = "created"
    parameter_name = "created"
    WINDOWS = {"1d": ("Last 24 hours", 1), "7d": ("Last 7 days", 7), "30d": ("Last 30 days", 30)}

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in self.WINDOWS.items()]

    def queryset(self, request, queryset):
        if self.value() not in self.WINDOWS:
            return queryset
        since = timezone.now() - timedelta(days=self.WINDOWS[self.value()][1])
        return queryset.filter(pk__gte=f"pay_{ulid_floor(since)}")


# Provider ids by their shape, so a search looks in one index instead of all of them.
_PROVIDER_ID_SHAPES = [
    (re.compile(r"^sbx_pay_[0-9A-Za-z]+$"), "sandbox"),
    (re.compile(r"^pi_[0-9A-Za-z]+$"), "stripe"),
    (re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"), "yookassa"),
]


def payment_search(queryset, term: str):
    """
    What staff type into the search box, matched exactly and through an index: a payment
    or customer id, a customer's email, a provider's payment or checkout id, an order id,
    a reference or a customer's external id.
    """
    term = term.strip()
    if not term or "\x00" in term:
        return queryset
    if term.startswith("pay_"):
        return queryset.filter(pk=term)
    if term.startswith("cus_"):
        return queryset.filter(customer_id=term)
    if "@" in term:
        # Customer ids first (a small indexed lookup), then payments by the customer index:
        # a subquery here lets the planner walk every payment instead.
        customers = list(Customer.objects.filter(email__iexact=term).values_list("pk", flat=True))
        return queryset.filter(customer_id__in=customers)
    if term.startswith("cs_"):
        return queryset.filter(provider="stripe", provider_checkout_id=term)
    for shape, provider in _PROVIDER_ID_SHAPES:
        if shape.match(term):
            return queryset.filter(provider=provider, provider_payment_id=term)
    match = Q(order_id=term) | Q(reference=term)
    customers = list(Customer.objects.filter(external_id=term).values_list("pk", flat=True))
    if customers:
        match |= Q(customer_id__in=customers)
    return queryset.filter(match)


class StaffMoneyForm(forms.Form):
    amount = forms.CharField(max_length=30)
    reason = forms.CharField(max_length=500, required=False)


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    """
    Read-only: every change goes through the payment services, from the Refund, Capture
    and Cancel pages (with a confirmation step), never through a form edit. Each action is
    in the payment's timeline with the staff user and in the admin log.
    """

    list_display = [
        "id", "merchant", "customer", "status", "amount", "currency", "provider", "order_id",
        "created_at",
    ]  # fmt: skip
    list_filter = ["status", ProviderFilter, CurrencyFilter, CreatedFilter]
    search_fields = ["id"]  # the box; the matching is `payment_search`
    search_help_text = (
        "An exact id: payment, customer, order, reference, provider payment or checkout, "
        "customer email or external id."
    )
    list_select_related = ["merchant", "customer"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    inlines = [PaymentEventInline, RefundInline]
    change_form_template = "admin/payments/payment/change_form.html"
    # Other apps add read-only panels to the change page (callbacks of the payment,
    # invoices), without payments importing them: `PaymentAdmin.panels.append(fn)`, where
    # fn(payment) returns HTML.
    panels: list = []

    def get_search_results(self, request, queryset, search_term):
        return payment_search(queryset, search_term), False

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "related"]

    @admin.display(description="Related")
    def related(self, obj):
        parts = [panel(obj) for panel in self.panels]
        return format_html_join(mark_safe("<hr>"), "{}", ((part,) for part in parts if part))

    def get_urls(self):
        own = [
            path(
                "<str:payment_id>/refund/",
                self.admin_site.admin_view(self.refund_view),
                name="payments_payment_refund",
            ),
            path(
                "<str:payment_id>/capture/",
                self.admin_site.admin_view(self.capture_view),
                name="payments_payment_capture",
            ),
            path(
                "<str:payment_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="payments_payment_cancel",
            ),
        ]
        return own + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The admin's own links escape ids ("_" becomes "_5F"); ours below do not.
        payment = self.get_object(request, unquote(object_id))
        extra = {**(extra_context or {})}
        if payment is not None:
            extra["money_actions"] = self._money_actions(request, payment)
        return super().change_view(request, object_id, form_url, extra)

    def _money_actions(self, request, payment) -> list[tuple[str, str]]:
        user = request.user
        actions = []
        if payment.status in services.REFUNDABLE_STATUSES and user.has_perm(
            "payments.refund_payment"
        ):
            actions.append(("Refund", "admin:payments_payment_refund"))
        if payment.status == PaymentStatus.REQUIRES_CAPTURE and user.has_perm(
            "payments.capture_payment"
        ):
            actions.append(("Capture", "admin:payments_payment_capture"))
        if services.payment_can_transition(payment.status, PaymentStatus.CANCELED) and (
            user.has_perm("payments.cancel_payment")
        ):
            actions.append(("Cancel payment", "admin:payments_payment_cancel"))
        return [(label, reverse(name, args=[payment.pk])) for label, name in actions]

    # --- Staff money actions: form, then confirmation, then the service ------------------

    def refund_view(self, request, payment_id):
        payment = self._payment_or_404(request, payment_id, "payments.refund_payment")
        refundable = services.payment_refundable(payment)
        initial = {"amount": money.amount_format(refundable, payment.currency)}

        def act(amount, reason, actor):
            refusal = staff.refund_refusal(request.user, amount, payment.currency)
            if refusal:
                raise PermissionDenied(refusal)
            refund = services.refund_create(
                payment=payment,
                amount=amount,
                reason=reason,
                source=PaymentEvent.Source.ADMIN,
                actor=actor,
            )
            return f"Refund {refund.pk} of {self._shown(amount, payment)} is {refund.status}."

        return self._money_action(request, payment, "Refund", act, initial, refundable)

    def capture_view(self, request, payment_id):
        payment = self._payment_or_404(request, payment_id, "payments.capture_payment")
        initial = {"amount": money.amount_format(payment.amount, payment.currency)}

        def act(amount, reason, actor):
            captured = services.payment_capture(
                payment=payment, amount=amount, source=PaymentEvent.Source.ADMIN, actor=actor
            )
            return f"Captured {self._shown(captured.amount_captured, payment)}."

        return self._money_action(request, payment, "Capture", act, initial, payment.amount)

    def cancel_view(self, request, payment_id):
        payment = self._payment_or_404(request, payment_id, "payments.cancel_payment")
        initial = {"amount": money.amount_format(payment.amount, payment.currency)}

        def act(amount, reason, actor):
            services.payment_cancel(payment=payment, source=PaymentEvent.Source.ADMIN, actor=actor)
            return "The payment is canceled."

        return self._money_action(request, payment, "Cancel", act, initial, None)

    def _payment_or_404(self, request, payment_id: str, permission: str) -> Payment:
        payment = self.get_object(request, payment_id)
        if payment is None:
            raise Http404("No such payment.")
        if not request.user.has_perm(permission):
            raise PermissionDenied("You do not have permission to do this.")
        return payment

    @staticmethod
    def _shown(amount, payment) -> str:
        return f"{money.amount_format(amount, payment.currency)} {payment.currency}"

    def _money_action(self, request, payment, verb, act, initial, ceiling):
        """
        The form (amount, reason), then a confirmation page repeating what will happen,
        then the service. Errors (a refusal, a limit, the provider) show on the form and
        change nothing.
        """
        form = StaffMoneyForm(request.POST or None, initial=initial)
        confirming = False
        if request.method == "POST" and form.is_valid():
            try:
                amount = money.amount_parse(form.cleaned_data["amount"], payment.currency)
                if ceiling is not None and amount > ceiling:
                    raise ValidationFailed(
                        f"At most {self._shown(ceiling, payment)}.", param="amount"
                    )
                if verb == "Refund":
                    refusal = staff.refund_refusal(request.user, amount, payment.currency)
                    if refusal:
                        raise PermissionDenied(refusal)
                if request.POST.get("confirmed") == "yes":
                    actor = f"admin:{request.user.get_username()}"
                    outcome = act(amount, form.cleaned_data["reason"], actor)
                    self.log_change(
                        request,
                        payment,
                        f"{verb} {self._shown(amount, payment)} "
                        f"({form.cleaned_data['reason'] or 'no reason given'}): {outcome}",
                    )
                    self.message_user(request, outcome, messages.SUCCESS)
                    return HttpResponseRedirect(
                        reverse("admin:payments_payment_change", args=[payment.pk])
                    )
                confirming = True
            except (PaymentError, PermissionDenied) as exc:
                form.add_error(None, getattr(exc, "message", None) or str(exc))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{verb} payment {payment.pk}",
            "payment": payment,
            "verb": verb,
            "form": form,
            "confirming": confirming,
            "shown_amount": form.data.get("amount") if confirming else None,
            "refundable": money.amount_format(
                services.payment_refundable(payment), payment.currency
            ),
            "limit": (
                None
                if request.user.has_perm("payments.refund_payment_unlimited")
                else money.amount_format(staff.refund_limit(payment.currency), payment.currency)
            ),
        }
        return TemplateResponse(request, "admin/payments/payment/money_action.html", context)
