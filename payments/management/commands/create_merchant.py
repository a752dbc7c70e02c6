import json

from django.core.management.base import BaseCommand, CommandError

from payments import services
from payments.errors import PaymentError


class Command(BaseCommand):
    help = "Create a merchant with a fresh secret and publishable key, and print the keys once."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--live", action="store_true", help="Issue live-mode keys.")
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="Print one JSON object."
        )

    def handle(self, *args, name, live, as_json, **options):
        try:
            merchant, secret_key, publishable_key = services.merchant_onboard(
                name=name, livemode=live
            )
        except PaymentError as exc:
            raise CommandError(exc.message) from exc
        result = {
            "id": merchant.id,
            "name": merchant.name,
            "secret_key": secret_key,
            "publishable_key": publishable_key,
        }
        if as_json:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(self.style.SUCCESS(f"Created merchant {merchant.name} ({merchant.id})"))
        self.stdout.write(f"  Secret key:      {secret_key}")
        self.stdout.write(f"  Publishable key: {publishable_key}")
        self.stdout.write(
            "The keys are stored hashed: copy them now, they will not be shown again."
        )
