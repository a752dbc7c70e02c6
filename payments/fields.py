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
            if not key or len(key) > METADATA_MAX_KEY_LENGTH:
                raise serializers.ValidationError(
                    f"Keys must be 1 to {METADATA_MAX_KEY_LENGTH} characters."
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
        return {"type": "string", "enum": [self.target.object_type], "readOnly": True}
