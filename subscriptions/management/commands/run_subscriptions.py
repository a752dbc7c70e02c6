from django.core.management.base import BaseCommand, CommandError

from subscriptions.tasks import subscriptions_run_due


class Command(BaseCommand):
    help = (
        "Do the subscription work that is due now, once: renewals, dunning retries, "
        "period-end cancellations, expiries (what beat runs every minute). Safe to run "
        "beside beat."
    )

    def handle(self, *args, **options):
        result = subscriptions_run_due()
        self.stdout.write(
            f"Subscriptions advanced: {result['advanced']}, failed: {result['failed']}"
        )
        if result["failed"]:
            raise CommandError(f"{result['failed']} subscription(s) failed; see the log.")
