from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from payments.tasks import payments_expire_pending


class Command(BaseCommand):
    help = (
        "Cancel payments still pending after PAYMENT_PENDING_EXPIRY_HOURS (their checkout "
        "is closed at the provider first, so the buyer can no longer pay them); what beat "
        "does hourly."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--hours",
            type=int,
            default=None,
            help="Override the age (default: PAYMENT_PENDING_EXPIRY_HOURS).",
        )

    def handle(self, *args, hours, **options):
        hours = settings.PAYMENT_PENDING_EXPIRY_HOURS if hours is None else hours
        if hours < 1:
            raise CommandError("--hours must be at least 1.")
        result = payments_expire_pending(hours=hours)
        self.stdout.write(
            f"Expired {result['expired']} pending payment(s) older than {hours} h; "
            f"{result['failed']} could not be closed at the provider (tried again next run)."
        )
        if result["failed"]:
            raise CommandError(f"{result['failed']} payment(s) could not be expired.")
