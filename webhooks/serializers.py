from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from payments.fields import InputSerializer, ObjectTypeField
from webhooks.callbacks import EVENT_TYPES
from webhooks.models import Event, WebhookEndpoint


@extend_schema_field({"type": "string", "enum": ["*", *EVENT_TYPES]})
class EventTypeField(serializers.CharField):
    """An event type to subscribe to, or `*` for all (`webhooks.callbacks` checks it)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 60)
        super().__init__(**kwargs)


class EventOutputSerializer(serializers.ModelSerializer):
    object = ObjectTypeField("event")
    created = serializers.DateTimeField(source="created_at")
    data = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = ["id", "object", "type", "created", "livemode", "data"]
        read_only_fields = fields

    def get_data(self, event) -> dict:
        return {"object": event.data}


class EndpointCreateInputSerializer(InputSerializer):
    url = serializers.URLField(max_length=2000)
    enabled_events = serializers.ListField(child=EventTypeField(), min_length=1)
    description = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default=""
    )


class EndpointUpdateInputSerializer(InputSerializer):
    url = serializers.URLField(max_length=2000, required=False)
    enabled_events = serializers.ListField(child=EventTypeField(), min_length=1, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    disabled = serializers.BooleanField(required=False)


class EndpointOutputSerializer(serializers.ModelSerializer):
    object = ObjectTypeField("webhook_endpoint")
    status = serializers.SerializerMethodField()
    disabled_reason = serializers.SerializerMethodField()

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id", "object", "url", "description", "enabled_events", "status",
            "disabled_reason", "livemode", "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_status(self, endpoint) -> str:
        return "disabled" if endpoint.disabled else "enabled"

    def get_disabled_reason(self, endpoint) -> str | None:
        return endpoint.disabled_reason or None


class EndpointWithSecretOutputSerializer(EndpointOutputSerializer):
    """Only the answers to create and rotate carry the signing secret."""

    secret = serializers.CharField()

    class Meta(EndpointOutputSerializer.Meta):
        fields = [*EndpointOutputSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class EndpointDeletedOutputSerializer(serializers.Serializer):
    """What deleting an endpoint answers: which one, and that it is gone."""

    id = serializers.CharField()
    object = ObjectTypeField("webhook_endpoint")
    deleted = serializers.SerializerMethodField()

    def get_deleted(self, endpoint) -> bool:
        return True
