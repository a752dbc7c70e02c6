from django.conf import settings
from django.core.management.base import BaseCommand

from payments.tasks import idempotency_keys_purge


class Command(BaseCommand):
    help = (
        "Delete stored Idempotency-Key responses older than IDEMPOTENCY_KEY_TTL_HOURS "
        "(what beat does hourly)."
    )

    def handle(self, *args, **options):
        deleted = idempotency_keys_purge()
        hours = settings.IDEMPOTENCY_KEY_TTL_HOURS
        self.stdout.write(f"Deleted {deleted} idempotency key(s) older than {hours} h.")
