"""Input and output serializers, one pair per endpoint where they differ."""

from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from payments import money, providers
from payments.fields import (
    BlankAsNullField,
    InputSerializer,
    MetadataField,
    MoneyField,
    ObjectTypeField,
    RawAmountField,
)
from payments.models import Customer, Payment, PaymentEvent, Refund
from payments.services import pay_link_url


class CustomerCreateInputSerializer(InputSerializer):
    external_id = serializers.CharField(max_length=255)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    name = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")
    metadata = MetadataField()


class CustomerOutputSerializer(serializers.ModelSerializer):
    object = ObjectTypeField("customer")
    # Not an EmailField: a customer without an email has "" here, which is no email
    # address, and the schema must not promise one.
    email = serializers.CharField(help_text="An email address, or empty when unknown.")
    balances = serializers.SerializerMethodField()

    class Meta:
        model = Customer
        fields = [
            "id",
            "object",
            "external_id",
            "email",
            "name",
            "metadata",
            "balances",
            "created_at",
        ]
        read_only_fields = fields

    def get_balances(self, customer) -> dict[str, str]:
        """Prepaid credit per currency, e.g. {"RUB": "100.00"}."""
        from payments.services import customer_balances

        # Each key sees the credit of its own mode (the view puts it in the context).
        return customer_balances(customer, self.context.get("livemode", False))


class ConfigOutputSerializer(serializers.Serializer):
    """What a frontend needs to start a checkout; safe for a publishable key."""

    object = ObjectTypeField("config")
    merchant = serializers.CharField(source="merchant.id")
    merchant_name = serializers.CharField(source="merchant.name")
    livemode = serializers.BooleanField()
    default_provider = serializers.CharField(source="merchant.default_provider")
    providers = serializers.ListField(child=serializers.CharField())
    stripe_publishable_key = serializers.CharField(allow_null=True)


@extend_schema_field(
    {
        "type": "string",
        "enum": sorted(money.CURRENCY_EXPONENTS),
        "description": "An ISO 4217 code (any case).",
        "example": "RUB",
    }
)
class CurrencyField(serializers.CharField):
    """A currency code; `payments.money` checks it against ISO 4217."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 3)
        super().__init__(**kwargs)


@extend_schema_field(
    {
        "type": "string",
        "enum": list(providers.ALL_PROVIDERS),
        "description": "Default: the merchant's. Only providers enabled on this deployment.",
    }
)
class ProviderField(serializers.CharField):
    """A provider name; the service checks that it is enabled here and for this mode."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 20)
        super().__init__(**kwargs)


CUSTOMER_ID_MAX_LENGTH = 255


class CustomerReferenceField(serializers.Field):
    """A customer id (`cus_…`), or `{"external_id", "email", "name"}` to find or create one."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            if not data:
                raise serializers.ValidationError("Must be a customer id or an object.")
            # Held to what any text field is (bounded, no NUL, which PostgreSQL refuses):
            # the id goes straight into a query.
            return serializers.CharField(max_length=CUSTOMER_ID_MAX_LENGTH).run_validation(data)
        if isinstance(data, dict):
            serializer = CustomerCreateInputSerializer(data=data)
            serializer.is_valid(raise_exception=True)
            return dict(serializer.validated_data)
        raise serializers.ValidationError("Must be a customer id or an object.")

    def to_representation(self, value):
        return value


class CustomerReferenceFieldSchema(OpenApiSerializerFieldExtension):
    target_class = CustomerReferenceField

    def map_serializer_field(self, auto_schema, direction):
        return {
            "oneOf": [
                {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": CUSTOMER_ID_MAX_LENGTH,
                    "description": "A customer id (cus_…)",
                },
                {
                    "type": "object",
                    "required": ["external_id"],
                    "properties": {
                        "external_id": {"type": "string", "minLength": 1, "maxLength": 255},
                        "email": {"type": "string", "format": "email"},
                        "name": {"type": "string", "maxLength": 255},
                        "metadata": {
                            "type": "object",
                            "additionalProperties": {"type": "string", "maxLength": 500},
                        },
                    },
                    "additionalProperties": False,
                },
            ]
        }


class LineItemInputSerializer(InputSerializer):
    description = serializers.CharField(max_length=500)
    quantity = serializers.IntegerField(min_value=1, max_value=1_000_000, default=1)
    unit_amount = RawAmountField()


class PaymentCreateInputSerializer(InputSerializer):
    amount = RawAmountField()
    currency = CurrencyField()
    provider = ProviderField(required=False)
    customer = CustomerReferenceField(required=False)
    order_id = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")
    reference = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")
    description = serializers.CharField(
        required=False, allow_blank=True, max_length=1000, default=""
    )
    metadata = MetadataField()
    return_url = serializers.URLField(required=False, allow_blank=True, max_length=2000, default="")
    capture = serializers.BooleanField(required=False, default=True)
    line_items = LineItemInputSerializer(many=True, required=False, max_length=100)

    def validate(self, attrs):
        # Amount rules depend on the currency, so both are checked together here.
        attrs["currency"] = money.currency_normalize(attrs["currency"])
        attrs["amount"] = money.amount_parse(attrs["amount"], attrs["currency"])
        return attrs


class PaymentCaptureInputSerializer(InputSerializer):
    amount = RawAmountField(required=False)


class PaymentCancelInputSerializer(InputSerializer):
    pass


class PaymentOutputSerializer(serializers.ModelSerializer):
    object = ObjectTypeField("payment")
    amount = MoneyField("amount")
    amount_captured = MoneyField("amount_captured")
    amount_refunded = MoneyField("amount_refunded")
    checkout_url = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id", allow_null=True)
    payment_method = serializers.SerializerMethodField()
    provider_payment_id = BlankAsNullField()
    failure_code = BlankAsNullField()
    failure_message = BlankAsNullField()
    order_id = BlankAsNullField()
    reference = BlankAsNullField()
    return_url = BlankAsNullField()

    class Meta:
        model = Payment
        fields = [
            "id", "object", "status", "amount", "currency", "amount_captured", "amount_refunded",
            "capture", "provider", "provider_payment_id", "checkout_url", "customer",
            "payment_method", "order_id", "reference", "description", "line_items", "metadata",
            "return_url", "failure_code", "failure_message", "livemode", "created_at", "updated_at",
            "completed_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_checkout_url(self, payment) -> str:
        return pay_link_url(payment)

    def get_payment_method(self, payment) -> dict | None:
        if not payment.card_last4:
            return None
        return {"type": "card", "brand": payment.card_brand, "last4": payment.card_last4}

    def to_representation(self, payment) -> dict:
        """
        The fields above, written out: a payment is rendered on every create, read and list
        row, and DRF would build its ~25 field objects from the model for every instance
        (a tenth of a create request's time). `test_serializers.py` holds this to the
        declared fields' output, and the schema fuzz to the schema.
        """
        currency = payment.currency
        return {
            "id": payment.id,
            "object": "payment",
            "status": payment.status,
            "amount": money.amount_format(payment.amount, currency),
            "currency": currency,
            "amount_captured": money.amount_format(payment.amount_captured, currency),
            "amount_refunded": money.amount_format(payment.amount_refunded, currency),
            "capture": payment.capture,
            "provider": payment.provider,
            "provider_payment_id": payment.provider_payment_id or None,
            "checkout_url": self.get_checkout_url(payment),
            "customer": payment.customer_id,
            "payment_method": self.get_payment_method(payment),
            "order_id": payment.order_id or None,
            "reference": payment.reference or None,
            "description": payment.description,
            "line_items": payment.line_items,
            "metadata": payment.metadata,
            "return_url": payment.return_url or None,
            "failure_code": payment.failure_code or None,
            "failure_message": payment.failure_message or None,
            "livemode": payment.livemode,
            "created_at": datetime_format(payment.created_at),
            "updated_at": datetime_format(payment.updated_at),
            "completed_at": datetime_format(payment.completed_at),
        }


def datetime_format(value) -> str | None:
    """A time as DRF's DateTimeField renders it (DATETIME_FORMAT, the current time zone)."""
    if value is None:
        return None
    return timezone.localtime(value).strftime(api_settings.DATETIME_FORMAT)


class PaymentEventOutputSerializer(serializers.ModelSerializer):
    object = ObjectTypeField("payment_event")
    from_status = BlankAsNullField()
    to_status = BlankAsNullField()

    class Meta:
        model = PaymentEvent
        fields = [
            "id",
            "object",
            "type",
            "from_status",
            "to_status",
            "source",
            "actor",
            "data",
            "created_at",
        ]
        read_only_fields = fields


class RefundCreateInputSerializer(InputSerializer):
    amount = RawAmountField(required=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class RefundOutputSerializer(serializers.ModelSerializer):
    object = ObjectTypeField("refund")
    amount = MoneyField("amount")
    payment = serializers.CharField(source="payment_id")
    provider_refund_id = BlankAsNullField()
    failure_reason = BlankAsNullField()
    reason = BlankAsNullField()

    class Meta:
        model = Refund
        fields = [
            "id", "object", "payment", "amount", "currency", "status", "reason", "provider",
            "provider_refund_id", "failure_reason", "livemode", "created_at", "updated_at",
            "completed_at",
        ]  # fmt: skip
        read_only_fields = fields


class CreditCreateInputSerializer(InputSerializer):
    type = serializers.ChoiceField(choices=["grant", "deduct"])
    amount = RawAmountField()
    currency = CurrencyField()
    description = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default=""
    )


class CreditOutputSerializer(serializers.Serializer):
    """A credit transaction, as `payments.services.credit_object` renders it."""

    def to_representation(self, credit):
        from payments.services import credit_object

        return credit_object(credit)


class CustomerSessionCreateInputSerializer(InputSerializer):
    customer = serializers.CharField(max_length=255, help_text="The customer id (cus_…).")


class CustomerSessionOutputSerializer(serializers.Serializer):
    """A token that lets one customer read their own payments, until `expires_at`."""

    object = ObjectTypeField("customer_session")
    customer = serializers.CharField(source="customer.id")
    token = serializers.CharField(help_text="Send as `Authorization: Bearer <token>`.")
    expires_at = serializers.DateTimeField()
    livemode = serializers.BooleanField()
