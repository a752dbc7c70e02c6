"""Query-string filters of the events and webhook endpoints lists."""

import django_filters

from payments.filters import CreatedRangeFilterSet
from webhooks.models import Event, WebhookEndpoint


class EventFilter(CreatedRangeFilterSet):
    id_prefix = "evt"
    type = django_filters.CharFilter()

    class Meta:
        model = Event
        fields = ["type"]


class EndpointFilter(CreatedRangeFilterSet):
    id_prefix = "we"

    class Meta:
        model = WebhookEndpoint
        fields = []
