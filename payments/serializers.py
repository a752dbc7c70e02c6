"""Input and output serializers, one pair per endpoint where they differ."""

from rest_framework import serializers

from payments.fields import InputSerializer, MetadataField, ObjectTypeField
from payments.models import Customer


class CustomerCreateInputSerializer(InputSerializer):
    external_id = serializers.CharField(max_length=255)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    name = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")
    metadata = MetadataField()


class CustomerOutputSerializer(serializers.ModelSerializer):
    object = ObjectTypeField("customer")

    class Meta:
        model = Customer
        fields = ["id", "object", "external_id", "email", "name", "metadata", "created_at"]
        read_only_fields = fields


class ConfigOutputSerializer(serializers.Serializer):
    """What a frontend needs to start a checkout; safe for a publishable key."""

    object = ObjectTypeField("config")
    merchant = serializers.CharField(source="merchant.id")
    merchant_name = serializers.CharField(source="merchant.name")
    livemode = serializers.BooleanField()
    default_provider = serializers.CharField(source="merchant.default_provider")
    providers = serializers.ListField(child=serializers.CharField())
    stripe_publishable_key = serializers.CharField(allow_null=True)
