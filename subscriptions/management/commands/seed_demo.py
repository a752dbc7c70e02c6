import json

from django.conf import settings
from django.core.management.base import BaseCommand

from subscriptions.demo import demo_seed_all


class Command(BaseCommand):
    help = (
        "Create (or refresh) the demo merchant, its keys, customers, plans and a staff login. "
        "Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="Print one JSON object."
        )

    def handle(self, *args, as_json, **options):
        demo = demo_seed_all()
        if as_json:
            self.stdout.write(
                json.dumps(
                    {
                        "merchant": demo.merchant.id,
                        "secret_key": demo.secret_key,
                        "publishable_key": demo.publishable_key,
                        "staff_username": demo.staff_username,
                        "staff_password": demo.staff_password,
                    }
                )
            )
            return
        base = settings.PUBLIC_BASE_URL
        password = demo.staff_password or "(changed since seeding; unchanged by this run)"
        self.stdout.write(
            self.style.SUCCESS(f"Demo merchant: {demo.merchant.name} ({demo.merchant.id})")
        )
        self.stdout.write(f"  Secret key:      {demo.secret_key}")
        self.stdout.write(f"  Publishable key: {demo.publishable_key}")
        self.stdout.write(
            f"Staff login: {base}/admin/  user: {demo.staff_username}  password: {password}"
        )
        self.stdout.write(
            f"Try: curl -H 'Authorization: Bearer {demo.secret_key}' {base}/api/v1/customers"
        )
