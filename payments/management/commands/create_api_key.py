import json

from django.core.management.base import BaseCommand, CommandError

from payments import selectors, services
from payments.errors import PaymentError
from payments.models import APIKey


class Command(BaseCommand):
    help = "Issue a new API key for a merchant and print it once."

    def add_arguments(self, parser):
        parser.add_argument("merchant_id")
        parser.add_argument("--type", dest="kind", required=True, choices=APIKey.Kind.values)
        parser.add_argument("--live", action="store_true", help="Issue a live-mode key.")
        parser.add_argument("--name", default="", help="A label to recognise the key by.")
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="Print one JSON object."
        )

    def handle(self, *args, merchant_id, kind, live, name, as_json, **options):
        try:
            merchant = selectors.merchant_get(merchant_id)
            api_key, raw_key = services.api_key_create(
                merchant=merchant, kind=kind, livemode=live, name=name
            )
        except PaymentError as exc:
            raise CommandError(exc.message) from exc
        if as_json:
            self.stdout.write(
                json.dumps(
                    {"id": api_key.id, "merchant": merchant.id, "type": kind, "key": raw_key}
                )
            )
            return
        self.stdout.write(
            self.style.SUCCESS(f"Created a {kind} key for {merchant.name} ({merchant.id}):")
        )
        self.stdout.write(f"  {raw_key}")
        self.stdout.write("It is stored hashed: copy it now, it will not be shown again.")
