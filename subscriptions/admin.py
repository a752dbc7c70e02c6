"""
Plans are managed here (price terms fixed once created, like a price list); subscriptions
are read-only, changed only through the services: the cancel actions call them.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from payments import money
from payments.admin import ReadOnlyAdmin
from payments.errors import PaymentError
from subscriptions import services
from subscriptions.models import Plan, Subscription


class PlanForm(forms.ModelForm):
    class Meta:
        model = Plan
        fields = [
            "merchant", "code", "name", "description", "amount", "currency", "interval",
            "interval_count", "trial_days", "active", "metadata",
        ]  # fmt: skip

    def clean(self):
        data = super().clean()
        if self.instance._state.adding and "amount" in data and "currency" in data:
            try:
                data["currency"] = money.currency_normalize(data["currency"])
                data["amount"] = money.amount_coerce(data["amount"], data["currency"])
            except PaymentError as exc:
                raise ValidationError({exc.param or "amount": exc.message}) from None
        return data


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    form = PlanForm
    list_display = [
        "code", "name", "amount", "currency", "interval", "interval_count", "trial_days",
        "active", "merchant",
    ]  # fmt: skip
    list_filter = ["active", "interval", "currency"]
    search_fields = ["=id", "code", "name", "merchant__id"]
    list_select_related = ["merchant"]
    raw_id_fields = ["merchant"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ["id", "created_at"]
        # What subscribers agreed to pay never changes under them: make a new plan instead.
        return [
            "id", "merchant", "code", "amount", "currency", "interval", "interval_count",
            "created_at",
        ]  # fmt: skip

    def has_delete_permission(self, request, obj=None):
        return False  # deactivate instead: subscriptions refer to it


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = [
        "id", "customer", "plan", "status", "current_period_end", "cancel_at_period_end",
        "provider", "merchant", "livemode",
    ]  # fmt: skip
    list_filter = ["status", "cancel_at_period_end", "provider", "livemode"]
    search_fields = ["=id", "=customer__id", "=customer__external_id", "customer__email"]
    list_select_related = ["customer", "plan", "merchant"]
    show_full_result_count = False
    actions = ["cancel_now", "cancel_at_period_end"]

    @admin.action(description="Cancel now", permissions=["change"])
    def cancel_now(self, request, queryset):
        self._cancel(request, queryset, at_period_end=False)

    @admin.action(description="Cancel at period end", permissions=["change"])
    def cancel_at_period_end(self, request, queryset):
        self._cancel(request, queryset, at_period_end=True)

    def _cancel(self, request, queryset, *, at_period_end: bool):
        done = 0
        for subscription in queryset:
            try:
                services.subscription_cancel(
                    subscription=subscription,
                    at_period_end=at_period_end,
                    actor=f"admin:{request.user.get_username()}",
                )
            except PaymentError as exc:
                self.message_user(request, f"{subscription.pk}: {exc.message}", messages.ERROR)
                continue
            when = "at period end" if at_period_end else "now"
            self.log_change(request, subscription, f"Canceled {when}.")
            done += 1
        if done:
            self.message_user(request, f"Canceled {done} subscription(s).", messages.SUCCESS)
