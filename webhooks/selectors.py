from django.db.models import QuerySet

from payments.errors import NotFound
from payments.models import Merchant
from webhooks.models import Event, WebhookEndpoint


def event_list(*, merchant: Merchant, livemode: bool) -> QuerySet[Event]:
    return Event.objects.filter(merchant=merchant, livemode=livemode)


def event_get_for_merchant(*, merchant: Merchant, livemode: bool, event_id: str) -> Event:
    if "\x00" in event_id:
        raise NotFound("event", event_id)
    event = event_list(merchant=merchant, livemode=livemode).filter(pk=event_id).first()
    if event is None:
        raise NotFound("event", event_id)
    return event


def endpoint_list(*, merchant: Merchant, livemode: bool) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(merchant=merchant, livemode=livemode)


def endpoint_get_for_merchant(
    *, merchant: Merchant, livemode: bool, endpoint_id: str
) -> WebhookEndpoint:
    if "\x00" in endpoint_id:
        raise NotFound("webhook endpoint", endpoint_id)
    endpoint = endpoint_list(merchant=merchant, livemode=livemode).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return endpoint
