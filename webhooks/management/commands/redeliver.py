from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import is_naive, make_aware

from webhooks import callbacks
from webhooks.models import Event, WebhookEndpoint


class Command(BaseCommand):
    help = (
        "Send merchant callbacks again: those of one event, one endpoint, the failed ones, "
        "or those of events since a time (combinable)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--event", help="An event id (evt_…).")
        parser.add_argument("--endpoint", help="A webhook endpoint id (we_…).")
        parser.add_argument(
            "--failed", action="store_true", help="Only deliveries that failed at least once."
        )
        parser.add_argument("--since", help="Only events since this ISO date or time (UTC).")

    def handle(self, *args, event, endpoint, failed, since, **options):
        if not (event or endpoint or failed or since):
            raise CommandError(
                "Say what to redeliver: --event, --endpoint, --failed and/or --since."
            )
        if event and not Event.objects.filter(pk=event).exists():
            raise CommandError(f"No such event: {event}")
        if endpoint and not WebhookEndpoint.objects.filter(pk=endpoint).exists():
            raise CommandError(f"No such webhook endpoint: {endpoint}")
        since_at = _parse_since(since) if since else None
        count = callbacks.deliveries_redeliver(
            event_id=event, endpoint_id=endpoint, failed_only=failed, since=since_at
        )
        self.stdout.write(f"Queued {count} deliver{'y' if count == 1 else 'ies'} for sending.")


def _parse_since(value: str):
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since must be an ISO date or time, not {value!r}.")
        moment = parse_datetime(f"{day.isoformat()}T00:00:00")
    return make_aware(moment) if is_naive(moment) else moment
