"""Serializer building blocks shared by every endpoint's input and output serializers."""

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500


class InputSerializer(serializers.Serializer):
    """
    Rejects fields the endpoint does not know. A typo such as `ammount` must be a 400 that
    names the field, not a request that silently ignores it.
    """

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = [key for key in data if key not in self.fields]
            if unknown:
                detail = serializers.ErrorDetail(
                    f"Received unknown parameter: {unknown[0]}.", code="parameter_unknown"
                )
                raise serializers.ValidationError({unknown[0]: [detail]})
        return super().to_internal_value(data)


class MetadataField(serializers.DictField):
    """Free-form string key/value pairs for the merchant's own use, bounded in size."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "child", serializers.CharField(max_length=METADATA_MAX_VALUE_LENGTH, allow_blank=True)
        )
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > METADATA_MAX_KEYS:
            raise serializers.ValidationError(f"At most {METADATA_MAX_KEYS} keys.")
        for key in value:
            if not key or len(key) > METADATA_MAX_KEY_LENGTH or "\x00" in key:
                raise serializers.ValidationError(
                    f"Keys must be 1 to {METADATA_MAX_KEY_LENGTH} characters, without NUL."
                )
        return value


class ObjectTypeField(serializers.Field):
    """The constant `object` field of every resource (`"customer"`, `"payment"`, …)."""

    def __init__(self, object_type: str, **kwargs):
        self.object_type = object_type
        kwargs["source"] = "*"
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value):
        return self.object_type


class ObjectTypeFieldSchema(OpenApiSerializerFieldExtension):
    target_class = ObjectTypeField

    def map_serializer_field(self, auto_schema, direction):
        # Not an enum: spectacular would try to name one enum per object type and collide.
        object_type = self.target.object_type
        return {
            "type": "string",
            "example": object_type,
            "description": f'Always "{object_type}".',
            "readOnly": True,
        }


class RawAmountField(serializers.Field):
    """
    Takes the amount exactly as sent. DRF's CharField would turn the JSON number 1.5 into
    "1.5"; money must arrive as a string, so the type is checked by `payments.money`.
    """

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return value


class RawAmountFieldSchema(OpenApiSerializerFieldExtension):
    target_class = RawAmountField

    def map_serializer_field(self, auto_schema, direction):
        return {
            "type": "string",
            "pattern": r"^[0-9]+(\.[0-9]+)?$",
            "example": "599.00",
            "description": "Major units as a decimal string; decimals per ISO 4217.",
        }


class MoneyField(serializers.Field):
    """An amount of the object's own currency, as the canonical string ("599.00")."""

    def __init__(self, attribute: str, **kwargs):
        self.attribute = attribute
        kwargs["source"] = "*"
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, obj):
        from payments.money import amount_format

        return amount_format(getattr(obj, self.attribute), obj.currency)


class MoneyFieldSchema(OpenApiSerializerFieldExtension):
    target_class = MoneyField

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "example": "599.00", "readOnly": True}


class BlankAsNullField(serializers.CharField):
    """Text that is empty in the database reads as null in the API."""

    def to_representation(self, value):
        return value or None
