"""Input and output serializers of the plans and subscriptions API."""

from rest_framework import serializers

from payments.fields import (
    BlankAsNullField,
    InputSerializer,
    MetadataField,
    MoneyField,
    ObjectTypeField,
)
from payments.models import PaymentStatus
from payments.serializers import CustomerReferenceField, ProviderField
from payments.services import pay_link_url
from subscriptions.models import Plan, Subscription


class PlanOutputSerializer(serializers.ModelSerializer):
    object = ObjectTypeField("plan")
    amount = MoneyField("amount")
    description = BlankAsNullField()

    class Meta:
        model = Plan
        fields = [
            "id", "object", "code", "name", "description", "amount", "currency", "interval",
            "interval_count", "trial_days", "active", "metadata", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class SubscriptionCreateInputSerializer(InputSerializer):
    plan = serializers.CharField(max_length=64, help_text="A plan id (plan_…) or its code.")
    customer = CustomerReferenceField()
    provider = ProviderField(required=False)
    return_url = serializers.URLField(required=False, allow_blank=True, max_length=2000, default="")
    metadata = MetadataField()


class SubscriptionCancelInputSerializer(InputSerializer):
    at_period_end = serializers.BooleanField(required=False, default=False)


class SubscriptionOutputSerializer(serializers.ModelSerializer):
    object = ObjectTypeField("subscription")
    customer = serializers.CharField(source="customer_id")
    plan = PlanOutputSerializer()
    latest_invoice = serializers.CharField(source="latest_invoice_id", allow_null=True)
    checkout_url = serializers.SerializerMethodField()
    payment_method = serializers.SerializerMethodField()
    cancellation_reason = BlankAsNullField()
    return_url = BlankAsNullField()

    class Meta:
        model = Subscription
        fields = [
            "id", "object", "status", "customer", "plan", "provider", "current_period_start",
            "current_period_end", "trial_start", "trial_end", "cancel_at_period_end",
            "canceled_at", "ended_at", "cancellation_reason", "latest_invoice", "checkout_url",
            "payment_method", "return_url", "metadata", "livemode", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_checkout_url(self, subscription) -> str | None:
        """Where the customer pays the open invoice, while a payment there awaits them."""
        invoice = subscription.latest_invoice
        payment = invoice.payment if invoice is not None else None
        if payment is None or payment.off_session or payment.status != PaymentStatus.PENDING:
            return None
        return pay_link_url(payment)

    def get_payment_method(self, subscription) -> dict | None:
        if not subscription.payment_method_id:
            return None
        return {
            "type": "card",
            "brand": subscription.card_brand or None,
            "last4": subscription.card_last4 or None,
        }
